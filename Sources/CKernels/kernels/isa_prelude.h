// Included first by each isa_*.c, with KN_ISA_SUFFIX defined: the system headers the kernels use
// (before any target attribute applies), then the renames of isa_names.h.
#ifndef KILN_ISA_PRELUDE_H
#define KILN_ISA_PRELUDE_H

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KN_PASTE_(a, b) a##b
#define KN_PASTE(a, b) KN_PASTE_(a, b)
#define KN_ISA_NAME(name) KN_PASTE(name, KN_ISA_SUFFIX)
#include "isa_names.h"

#endif
