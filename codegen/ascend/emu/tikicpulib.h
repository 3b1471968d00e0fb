// CANN's CPU-twin host header (GmAlloc, ICPU_RUN_KF, SetKernelMode); in the emulator they live in
// ember_runtime.h, so host code written for tikicpulib compiles unchanged.
#pragma once
#include "kernel_operator.h"
