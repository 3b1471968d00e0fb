// Entry header of ember's AscendC CPU emulator: the generated kernel source includes this instead of CANN's
// kernel_operator.h and is compiled with g++ (-DEMBER_ASCEND_ARCH, -DEMBER_ASCEND_UB_BYTES; see emulate.py).
// The Matmul API lives in lib/matmul_intf.h, as in CANN.
#pragma once
#include "ember_types.h"
#include "ember_runtime.h"
#include "ember_tensor.h"
#include "ember_pipe.h"
#include "ember_copy.h"
#include "ember_vector.h"
#include "ember_cast.h"
#include "ember_reduce.h"

// AI Core code has no C math library: the generated source defines its own (codegen/ascend/cmath.py). Using one
// of these names after this point fails to compile here, as it would with CANN.
#pragma GCC poison expf exp2f logf log2f log1pf expm1f sqrtf sinf cosf tanf tanhf sinhf coshf asinf acosf atanf
#pragma GCC poison asinhf acoshf atanhf erff floorf ceilf nearbyintf truncf fabsf fmodf powf
