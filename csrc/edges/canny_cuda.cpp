// placeholder
#include "edges/edges.h"
