// placeholder: kernels land here
#include "edges/edges.h"
