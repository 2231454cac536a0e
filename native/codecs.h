// What the codec kernels share (native/codecs.cc: the value codecs; native/gradient-codecs.cc:
// QSGD, EF-sign, DGC's accumulation): the generator of src/tensor/random.ts — counter-based, so a
// kernel given a stream's state draws what the TypeScript reference would, 8 numbers at once where
// AVX2 is there —, float bits, argument access, and IEEE half conversion. Each kernel gives the
// same bits as its reference (src/kernels/reference-codecs.ts), random draws included: doubles
// where the reference computes in JavaScript numbers, floats where it stores to a Float32Array; no
// denormal flushing (the codecs must keep what JavaScript keeps).
#pragma once

#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <immintrin.h>

namespace converge {

/** The generator of src/tensor/random.ts: the number after `state`, which advances. */
inline uint32_t nextBits(uint32_t& state) {
  uint32_t t = (state += 0x6d2b79f5u);
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}
inline double nextUniform(uint32_t& state) { return nextBits(state) / 4294967296.0; }

/** The stream's next 8 numbers at once (lane k: the k-th), the state advanced past them. */
__attribute__((target("avx2"))) inline __m256i nextBits8(uint32_t& state) {
  const __m256i step = _mm256_mullo_epi32(_mm256_set_epi32(8, 7, 6, 5, 4, 3, 2, 1), _mm256_set1_epi32(0x6d2b79f5));
  __m256i t = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(state)), step);
  state += 8 * 0x6d2b79f5u;
  t = _mm256_mullo_epi32(_mm256_xor_si256(t, _mm256_srli_epi32(t, 15)), _mm256_or_si256(t, _mm256_set1_epi32(1)));
  t = _mm256_xor_si256(t, _mm256_add_epi32(t, _mm256_mullo_epi32(_mm256_xor_si256(t, _mm256_srli_epi32(t, 7)), _mm256_or_si256(t, _mm256_set1_epi32(61)))));
  return _mm256_xor_si256(t, _mm256_srli_epi32(t, 14));
}

/** Whether this CPU runs the AVX2 paths (the portable loops give the same bits). */
inline const bool hasAvx2 = __builtin_cpu_supports("avx2");

inline uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}
inline float floatOf(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

template <typename T>
inline T* data(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::TypedArrayOf<T>>().Data();
}
template <typename T>
inline size_t length(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::TypedArrayOf<T>>().ElementLength();
}

// ---- fp16: round to nearest even, saturating at ±65504 (F. Giesen's integer method)

// Branch-free (the cases are chosen by selects), so that the loop vectorises: gradients mix
// normal and subnormal halves at random, and a branch per value mispredicts.
inline uint16_t halfBits(uint32_t word) {
  const uint32_t sign = (word >> 16) & 0x8000u;
  const uint32_t u = word & 0x7fffffffu;
  const uint32_t normal = (u + ((15u - 127u) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  // a subnormal half: adding 0.5 lets the float adder round the value into the low bits
  const uint32_t subnormal = bitsOf(floatOf(u) + 0.5f) - 0x3f000000u;
  uint32_t h = u < 0x38800000u ? subnormal : normal;
  h = u >= 0x477ff000u ? 0x7bffu : h;  // ≥ 65520 (rounds past the largest half): saturate
  return static_cast<uint16_t>(u > 0x7f800000u ? 0x7e00u : (sign | h));  // NaN: one quiet NaN, unsigned
}

/** The value of every half, made on first use (256 KiB): a lookup per value, no branches. */
inline const float* halfTable() {
  static float* table = [] {
    float* t = new float[65536];
    for (uint32_t h = 0; h < 65536; h++) {
      const uint32_t sign = (h & 0x8000u) << 16;
      const uint32_t exponent = (h >> 10) & 0x1f;
      const uint32_t mantissa = h & 0x3ffu;
      if (exponent == 0) t[h] = floatOf(sign | bitsOf(mantissa * 5.9604644775390625e-8f));  // mantissa · 2^-24, exact
      else if (exponent == 31) t[h] = mantissa ? floatOf(0x7fc00000u) : floatOf(sign | 0x7f800000u);  // NaN as JavaScript's
      else t[h] = floatOf(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }
    return t;
  }();
  return table;
}

}  // namespace converge
