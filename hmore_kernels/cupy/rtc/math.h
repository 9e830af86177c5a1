// NVRTC stand-in for <math.h>: see hmore_rtc.h.
#pragma once
#include "hmore_rtc.h"
