// The Python extension entry point. Everything real is registered with the PyTorch dispatcher by
// static initialisers in the other translation units; importing this module loads them.
#include <Python.h>

static struct PyModuleDef hmore_C_module = {PyModuleDef_HEAD_INIT, "_C",
                                            "hmore_kernels native ops (registered under torch.ops.hmore)", -1,
                                            nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&hmore_C_module); }
