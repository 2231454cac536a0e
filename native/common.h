// What converge's native kernels share (native/converge.cc, native/batch-norm.cc): reading
// Node-API arguments, flushing denormals for the length of a call, and compiling a kernel for
// several CPUs.
#pragma once

#define NAPI_VERSION 8
#define NODE_ADDON_API_DISABLE_DEPRECATED
#include <napi.h>

#include <cstdint>
#include <xmmintrin.h>

namespace converge {

// ---- argument access: no validation beyond what the JavaScript wrapper already did

inline float* floats(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::TypedArrayOf<float>>().Data();
}
inline int32_t* ints(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::TypedArrayOf<int32_t>>().Data();
}
inline int integer(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int32Value();
}
inline double number(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().DoubleValue();
}
inline bool flag(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Boolean>().Value();
}

/**
 * Denormal floats (below 1.2e-38; gradients reach them) flushed to zero for the duration of a
 * kernel, then the thread's own mode restored (JavaScript's arithmetic must keep them).
 * Arithmetic on denormals takes a slow path in the CPU: flushing them in the convolutions and
 * batch norm made a ResNet-20 step on Fashion-MNIST 10–13% faster.
 */
struct FlushDenormals {
  unsigned saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
};

/** A kernel compiled for AVX-512, AVX2 and the baseline; the loader picks what the CPU has. */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

}  // namespace converge
