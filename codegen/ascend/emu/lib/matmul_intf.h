// CANN's include path for the high-level Matmul API; the emulator's version is ember_matmul.h.
#pragma once
#include "../kernel_operator.h"
#include "../ember_matmul.h"
