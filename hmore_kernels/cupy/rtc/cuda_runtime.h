// NVRTC stand-in for <cuda_runtime.h>: see hmore_rtc.h.
#pragma once
#include "hmore_rtc.h"
