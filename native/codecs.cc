// The codecs of gradient compression (src/compress) and low-precision parameters
// (src/tensor/precision.ts): fp16 and bf16 conversion, stochastic bf16 and int8 block rounding,
// QSGD's bit-packed levels, EF-signSGD's signs. Each gives the same bits as its TypeScript
// reference (src/kernels/reference-codecs.ts), random draws included: a stochastic kernel is given
// the state of the caller's Random stream (mulberry32, a counter-based generator: the i-th number
// is a hash of state + i·step) and draws one number per value, in order, as the reference does.
// Doubles where the reference computes in JavaScript numbers, floats where it stores to a
// Float32Array; no denormal flushing (the codecs must keep what JavaScript keeps).
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <immintrin.h>

namespace converge {
namespace {

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

const bool hasAvx2 = __builtin_cpu_supports("avx2");

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
T* data(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::TypedArrayOf<T>>().Data();
}
template <typename T>
size_t length(const Napi::CallbackInfo& info, size_t i) {
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
const float* halfTable() {
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

/** Where the CPU converts (F16C): the same bits, 8 values an instruction. Clamping to ±65504 before the
 *  hardware's nearest-even rounding is saturation (what lies between rounds to 65504 anyway); NaN lanes
 *  are then set to the one NaN the reference writes. */
__attribute__((target("avx,f16c,sse4.1"))) void fp16EncodeF16c(const float* values, const uint32_t* words, uint16_t* out, size_t n) {
  const __m256 high = _mm256_set1_ps(65504.f), low = _mm256_set1_ps(-65504.f);
  const __m128i nan = _mm_set1_epi16(0x7e00);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(values + i);
    const __m256i isNan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    const __m128i halves = _mm256_cvtps_ph(_mm256_max_ps(_mm256_min_ps(x, high), low), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m128i mask = _mm_packs_epi32(_mm256_castsi256_si128(isNan), _mm256_extractf128_si256(isNan, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_blendv_epi8(halves, nan, mask));
  }
  for (; i < n; i++) out[i] = halfBits(words[i]);
}

// fp16Encode(values, out)
void Fp16Encode(const Napi::CallbackInfo& info) {
  const uint32_t* words = data<uint32_t>(info, 0);
  const size_t n = length<uint32_t>(info, 0);
  uint16_t* out = data<uint16_t>(info, 1);
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) fp16EncodeF16c(reinterpret_cast<const float*>(words), words, out, n);
  else for (size_t i = 0; i < n; i++) out[i] = halfBits(words[i]);
}

// fp16Decode(stored, target, accumulate)
void Fp16Decode(const Napi::CallbackInfo& info) {
  const uint16_t* stored = data<uint16_t>(info, 0);
  float* target = data<float>(info, 1);
  const size_t n = length<float>(info, 1);
  const float* table = halfTable();
  if (flag(info, 2)) for (size_t i = 0; i < n; i++) target[i] += table[stored[i]];
  else for (size_t i = 0; i < n; i++) target[i] = table[stored[i]];
}

// ---- bf16: the top 16 bits, rounded to nearest even, or stochastically (random ≥ 0: a stream's state)

/** Stochastic bf16, 8 values at once: the same noise (the stream's next numbers' top 16 bits), the same carries. */
__attribute__((target("avx2"))) size_t bf16StochasticAvx2(const uint32_t* words, size_t n, uint16_t* out, uint32_t& state) {
  const __m256i exponent = _mm256_set1_epi32(0x7f800000);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i));
    const __m256i noise = _mm256_srli_epi32(nextBits8(state), 16);
    const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent), exponent);  // inf, NaN: kept
    const __m256i rounded = _mm256_srli_epi32(_mm256_blendv_epi8(_mm256_add_epi32(bits, noise), bits, special), 16);
    // 8 × 32 → 8 × 16 bits (the pack works within 128-bit lanes: put the two halves side by side)
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(rounded, rounded), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  return i;
}

// bf16Encode(values, out, random)
void Bf16Encode(const Napi::CallbackInfo& info) {
  const uint32_t* words = data<uint32_t>(info, 0);
  const size_t n = length<uint32_t>(info, 0);
  uint16_t* out = data<uint16_t>(info, 1);
  const double random = number(info, 2);
  if (random < 0) {
    for (size_t i = 0; i < n; i++) {
      const uint32_t bits = words[i];
      out[i] = (bits & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((bits >> 16) | 0x40u)
                                                   : static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
    return;
  }
  uint32_t state = static_cast<uint32_t>(random);
  for (size_t i = hasAvx2 ? bf16StochasticAvx2(words, n, out, state) : 0; i < n; i++) {
    const uint32_t bits = words[i];
    const uint32_t noise = nextBits(state) >> 16;
    // inf and NaN kept; otherwise a carry out of the dropped bits rounds the magnitude up
    out[i] = (bits & 0x7f800000u) == 0x7f800000u ? static_cast<uint16_t>(bits >> 16) : static_cast<uint16_t>((bits + noise) >> 16);
  }
}

// bf16Decode(stored, target, accumulate)
void Bf16Decode(const Napi::CallbackInfo& info) {
  const uint16_t* stored = data<uint16_t>(info, 0);
  float* target = data<float>(info, 1);
  const size_t n = length<float>(info, 1);
  if (flag(info, 2)) for (size_t i = 0; i < n; i++) target[i] += floatOf(static_cast<uint32_t>(stored[i]) << 16);
  else for (size_t i = 0; i < n; i++) target[i] = floatOf(static_cast<uint32_t>(stored[i]) << 16);
}

// ---- int8 blocks: per 64 values a float32 scale (max |v| / 127), then q ∈ [−127, 127] rounded stochastically

constexpr size_t kInt8Block = 64;

/** One whole block of 64 finite values, 8 at a time: the same scale, doubles and random numbers as the scalar loop.
 *  Returns false (nothing written, the stream untouched) when the block holds a NaN or an infinity. */
__attribute__((target("avx2"))) bool int8BlockAvx2(const float* values, float* scaleOut, int8_t* q, uint32_t& state) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 top = _mm256_setzero_ps();
  __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (size_t i = 0; i < kInt8Block; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(values + i), magnitude);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, _mm256_set1_ps(3.4028234663852886e38f), _CMP_LE_OQ));
    top = _mm256_max_ps(top, a);
  }
  if (_mm256_movemask_ps(finite) != 0xff) return false;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, top);
  float absMax = 0;
  for (float lane : lanes) absMax = std::max(absMax, lane);
  const float scale = static_cast<float>(static_cast<double>(absMax) / 127);
  *scaleOut = scale;
  const __m256d inverse = _mm256_set1_pd(scale > 0 ? 1 / static_cast<double>(scale) : 0);
  const __m256d twoTo31 = _mm256_set1_pd(2147483648.0), twoToMinus32 = _mm256_set1_pd(1.0 / 4294967296.0);
  const __m256d high = _mm256_set1_pd(127), low = _mm256_set1_pd(-127);
  const __m128i top32 = _mm_set1_epi32(INT32_MIN);
  for (size_t i = 0; i < kInt8Block; i += 8) {
    const __m256i bits = nextBits8(state);
    __m128i half[2];
    for (int h = 0; h < 2; h++) {
      const __m128i t = h ? _mm256_extracti128_si256(bits, 1) : _mm256_castsi256_si128(bits);
      const __m256d u = _mm256_mul_pd(_mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(t, top32)), twoTo31), twoToMinus32);
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(values + i + 4 * h));
      const __m256d rounded = _mm256_floor_pd(_mm256_add_pd(_mm256_mul_pd(v, inverse), u));
      half[h] = _mm256_cvttpd_epi32(_mm256_max_pd(_mm256_min_pd(rounded, high), low));
    }
    const __m128i words = _mm_packs_epi32(half[0], half[1]);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(words, words));
  }
  return true;
}

// int8Encode(values, out, random): out = ⌈n/64⌉ float scales, then n int8
void Int8Encode(const Napi::CallbackInfo& info) {
  const float* values = data<float>(info, 0);
  const size_t n = length<float>(info, 0);
  uint8_t* out = data<uint8_t>(info, 1);
  uint32_t state = static_cast<uint32_t>(number(info, 2));
  const size_t blocks = (n + kInt8Block - 1) / kInt8Block;
  int8_t* q = reinterpret_cast<int8_t*>(out + 4 * blocks);
  for (size_t b = 0; b < blocks; b++) {
    const size_t first = b * kInt8Block, last = std::min(n, first + kInt8Block);
    float vectorScale;
    if (hasAvx2 && last - first == kInt8Block && int8BlockAvx2(values + first, &vectorScale, q + first, state)) {
      std::memcpy(out + 4 * b, &vectorScale, 4);
      continue;
    }
    double absMax = 0;
    // as JavaScript's Math.max: a NaN wins
    for (size_t i = first; i < last; i++) absMax = std::isnan(absMax) || std::isnan(values[i]) ? NAN : std::max(absMax, std::fabs(static_cast<double>(values[i])));
    const float scale = static_cast<float>(absMax / 127);
    std::memcpy(out + 4 * b, &scale, 4);
    const double inverse = scale > 0 ? 1 / static_cast<double>(scale) : 0;
    for (size_t i = first; i < last; i++) {
      const double rounded = std::floor(values[i] * inverse + nextUniform(state));
      q[i] = static_cast<int8_t>(rounded > 127 ? 127 : rounded < -127 ? -127 : rounded == rounded ? rounded : 0);  // NaN: 0, as an Int8Array stores it
    }
  }
}

// int8Decode(bytes, values)
void Int8Decode(const Napi::CallbackInfo& info) {
  const uint8_t* bytes = data<uint8_t>(info, 0);
  float* values = data<float>(info, 1);
  const size_t n = length<float>(info, 1);
  const size_t blocks = (n + kInt8Block - 1) / kInt8Block;
  const int8_t* q = reinterpret_cast<const int8_t*>(bytes + 4 * blocks);
  for (size_t b = 0; b < blocks; b++) {
    float scale;
    std::memcpy(&scale, bytes + 4 * b, 4);
    const size_t last = std::min(n, (b + 1) * kInt8Block);
    for (size_t i = b * kInt8Block; i < last; i++) values[i] = static_cast<float>(q[i] * static_cast<double>(scale));
  }
}

// ---- QSGD: per bucket its L2 norm (float32), then per value a sign bit and a level ℓ ∈ 0..s, `bits` bits each,
// least significant first; ℓ rounds |v|·(s/norm) up with probability its fraction, and decodes to ℓ·(norm/s),
// in float32 arithmetic. The squares are summed in doubles in 4 lanes (value i of a bucket into lane
// i mod 4), then (lane 0 + lane 1) + (lane 2 + lane 3).

inline size_t packedBytes(size_t count, int bits) { return (count * bits + 7) / 8; }

__attribute__((target("avx2"))) size_t squaresAvx2(const float* g, size_t count, double* lanes) {
  __m256d sum = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(g + i));
    sum = _mm256_add_pd(sum, _mm256_mul_pd(x, x));
  }
  _mm256_storeu_pd(lanes, sum);
  return i;
}

float bucketNorm(const float* g, size_t count) {
  double lanes[4] = {0, 0, 0, 0};
  static const bool avx2 = __builtin_cpu_supports("avx2");
  for (size_t i = avx2 ? squaresAvx2(g, count, lanes) : 0; i < count; i++) lanes[i & 3] += static_cast<double>(g[i]) * g[i];
  return static_cast<float>(std::sqrt((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])));
}

/** One value's code: its sign bit above its level, |x|·(levels / norm) rounded up with probability its fraction
 *  (float32 arithmetic; the uniform number is the draw's top 24 bits, exactly a float). */
inline uint8_t levelCode(float x, float ratio, uint32_t levels, int bits, uint32_t& state) {
  const float scaled = std::fabs(x) * ratio;
  const float low = std::floor(scaled);
  const float uniform = static_cast<float>(nextBits(state) >> 8) * 5.9604644775390625e-8f;  // · 2^-24
  // a NaN level (an infinite value, or norm) is 0, as JavaScript's `| NaN` makes it
  const uint32_t level = scaled != scaled ? 0 : std::min<uint32_t>(levels, static_cast<uint32_t>(low) + (uniform < scaled - low ? 1 : 0));
  return static_cast<uint8_t>((x < 0 ? 1u : 0u) << (bits - 1) | level);
}

/** codes[i] for values g[0, count), 8 at a time: the same floats, compares and random numbers as levelCode. */
__attribute__((target("avx2"))) size_t levelCodesAvx2(const float* g, size_t count, float ratio, uint32_t levels, int bits, uint32_t& state, uint8_t* codes) {
  const __m256 r = _mm256_set1_ps(ratio), top = _mm256_set1_ps(static_cast<float>(levels)), one = _mm256_set1_ps(1), zero = _mm256_setzero_ps();
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 twoToMinus24 = _mm256_set1_ps(5.9604644775390625e-8f);
  const __m256i signBit = _mm256_set1_epi32(1 << (bits - 1));
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i t = nextBits8(state);
    const __m256 uniform = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(t, 8)), twoToMinus24);
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 scaled = _mm256_mul_ps(_mm256_and_ps(x, magnitude), r);
    const __m256 low = _mm256_floor_ps(scaled);
    const __m256 up = _mm256_and_ps(_mm256_cmp_ps(uniform, _mm256_sub_ps(scaled, low), _CMP_LT_OQ), one);
    const __m256i level = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(scaled, scaled, _CMP_UNORD_Q)), _mm256_cvttps_epi32(_mm256_min_ps(_mm256_add_ps(low, up), top)));
    const __m256i negative = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_LT_OQ)), signBit);
    const __m256i code = _mm256_or_si256(level, negative);
    // 8 int32 → 8 bytes
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(words, words));
  }
  return i;
}

/** codes (one a byte) → bits each, least significant first; returns the bytes written. */
size_t packCodes(const uint8_t* codes, size_t count, int bits, uint8_t* out) {
  if (bits == 8) {
    std::memcpy(out, codes, count);
    return count;
  }
  if (bits == 4) {
    const size_t whole = count / 2;
    for (size_t j = 0; j < whole; j++) out[j] = static_cast<uint8_t>(codes[2 * j] | codes[2 * j + 1] << 4);
    if (count & 1) out[whole] = codes[count - 1];
    return packedBytes(count, bits);
  }
  if (bits == 2) {
    const size_t whole = count / 4;
    for (size_t j = 0; j < whole; j++) out[j] = static_cast<uint8_t>(codes[4 * j] | codes[4 * j + 1] << 2 | codes[4 * j + 2] << 4 | codes[4 * j + 3] << 6);
    if (count & 3) {
      uint32_t byte = 0;
      for (size_t k = 0; 4 * whole + k < count; k++) byte |= static_cast<uint32_t>(codes[4 * whole + k]) << (2 * k);
      out[whole] = static_cast<uint8_t>(byte);
    }
    return packedBytes(count, bits);
  }
  uint8_t* start = out;
  uint64_t acc = 0;
  int held = 0;
  for (size_t i = 0; i < count; i++) {
    acc |= static_cast<uint64_t>(codes[i]) << held;
    held += bits;
    while (held >= 8) {
      *out++ = static_cast<uint8_t>(acc);
      acc >>= 8;
      held -= 8;
    }
  }
  if (held > 0) *out++ = static_cast<uint8_t>(acc);
  return static_cast<size_t>(out - start);
}

void unpackCodes(const uint8_t* packed, size_t count, int bits, uint8_t* codes) {
  if (bits == 8) {
    std::memcpy(codes, packed, count);
    return;
  }
  const uint32_t mask = (1u << bits) - 1;
  if (bits == 4) {
    const size_t whole = count / 2;
    for (size_t j = 0; j < whole; j++) {
      codes[2 * j] = packed[j] & 15;
      codes[2 * j + 1] = packed[j] >> 4;
    }
    if (count & 1) codes[count - 1] = packed[whole] & 15;
    return;
  }
  if (bits == 2) {
    const size_t whole = count / 4;
    for (size_t j = 0; j < whole; j++) {
      for (int k = 0; k < 4; k++) codes[4 * j + k] = (packed[j] >> (2 * k)) & 3;
    }
    for (size_t i = 4 * whole; i < count; i++) codes[i] = (packed[whole] >> (2 * (i & 3))) & 3;
    return;
  }
  uint64_t acc = 0;
  int held = 0;
  for (size_t i = 0; i < count; i++) {
    while (held < bits) {
      acc |= static_cast<uint64_t>(*packed++) << held;
      held += 8;
    }
    codes[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    held -= bits;
  }
}

/** target[0, count) (+)= ±level·(norm / levels) from codes, 8 at a time, in float32 as the reference does. */
__attribute__((target("avx2"))) size_t decodeCodesAvx2(const uint8_t* codes, size_t count, float unit, uint32_t levels, int bits, float* target, bool accumulate) {
  const __m256 u = _mm256_set1_ps(unit);
  const __m256i levelMask = _mm256_set1_epi32(static_cast<int>(levels));
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
    const __m256 magnitude = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(code, levelMask)), u);
    // the code's sign bit moved to the float's
    const __m256 value = _mm256_xor_ps(magnitude, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(code, bits - 1), 31)));
    _mm256_storeu_ps(target + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(target + i), value) : value);
  }
  return i;
}

// qsgdEncode(gradient, bits, bucket, out, random)
void QsgdEncode(const Napi::CallbackInfo& info) {
  const float* g = data<float>(info, 0);
  const size_t n = length<float>(info, 0);
  const int bits = integer(info, 1);
  const size_t bucket = static_cast<size_t>(integer(info, 2));
  uint8_t* out = data<uint8_t>(info, 3);
  uint32_t state = static_cast<uint32_t>(number(info, 4));
  const uint32_t levels = (1u << (bits - 1)) - 1;
  thread_local std::vector<uint8_t> codes;
  codes.resize(bucket);
  size_t offset = 0;
  for (size_t start = 0; start < n; start += bucket) {
    const size_t count = std::min(n, start + bucket) - start;
    const float norm = bucketNorm(g + start, count);
    std::memcpy(out + offset, &norm, 4);
    offset += 4;
    const float ratio = norm > 0 ? static_cast<float>(levels) / norm : 0;
    size_t i = hasAvx2 ? levelCodesAvx2(g + start, count, ratio, levels, bits, state, codes.data()) : 0;
    for (; i < count; i++) codes[i] = levelCode(g[start + i], ratio, levels, bits, state);
    offset += packCodes(codes.data(), count, bits, out + offset);
  }
}

// qsgdDecode(payload, bits, bucket, target, accumulate)
void QsgdDecode(const Napi::CallbackInfo& info) {
  const uint8_t* payload = data<uint8_t>(info, 0);
  const int bits = integer(info, 1);
  const size_t bucket = static_cast<size_t>(integer(info, 2));
  float* target = data<float>(info, 3);
  const size_t n = length<float>(info, 3);
  const bool accumulate = flag(info, 4);
  const uint32_t levels = (1u << (bits - 1)) - 1;
  thread_local std::vector<uint8_t> codes;
  codes.resize(bucket);
  size_t offset = 0;
  for (size_t start = 0; start < n; start += bucket) {
    const size_t count = std::min(n, start + bucket) - start;
    float norm;
    std::memcpy(&norm, payload + offset, 4);
    offset += 4;
    unpackCodes(payload + offset, count, bits, codes.data());
    offset += packedBytes(count, bits);
    float* t = target + start;
    const float unit = norm / static_cast<float>(levels);
    size_t i = hasAvx2 ? decodeCodesAvx2(codes.data(), count, unit, levels, bits, t, accumulate) : 0;
    for (; i < count; i++) {
      const uint32_t code = codes[i];
      const float magnitude = static_cast<float>(code & levels) * unit;
      const float value = (code >> (bits - 1)) & 1 ? -magnitude : magnitude;
      t[i] = accumulate ? t[i] + value : value;
    }
  }
}

// ---- top-k's error feedback (DGC): residual += scale·g, or with momentum correction u = m·u + scale·g, residual += u

/** The momentum-corrected loop, 4 values at once in the same doubles. */
__attribute__((target("avx2"))) size_t dgcAvx2(const float* g, double scale, double m, float* u, float* residual, size_t n) {
  const __m256d s = _mm256_set1_pd(scale), f = _mm256_set1_pd(m);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d corrected = _mm256_add_pd(_mm256_mul_pd(f, _mm256_cvtps_pd(_mm_loadu_ps(u + i))), _mm256_mul_pd(s, _mm256_cvtps_pd(_mm_loadu_ps(g + i))));
    _mm_storeu_ps(u + i, _mm256_cvtpd_ps(corrected));
    _mm_storeu_ps(residual + i, _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtps_pd(_mm_loadu_ps(residual + i)), corrected)));
  }
  return i;
}

// dgcAccumulate(gradient, scale, momentumFactor, momentum | null, residual)
void DgcAccumulate(const Napi::CallbackInfo& info) {
  const float* g = data<float>(info, 0);
  const size_t n = length<float>(info, 0);
  const double scale = number(info, 1), m = number(info, 2);
  float* residual = data<float>(info, 4);
  if (info[3].IsNull()) {
    for (size_t i = 0; i < n; i++) residual[i] = static_cast<float>(residual[i] + scale * g[i]);
    return;
  }
  float* u = data<float>(info, 3);
  static const bool avx2 = __builtin_cpu_supports("avx2");
  for (size_t i = avx2 ? dgcAvx2(g, scale, m, u, residual, n) : 0; i < n; i++) {
    const double corrected = m * u[i] + scale * g[i];  // the residual takes it unrounded, as the reference's expression does
    u[i] = static_cast<float>(corrected);
    residual[i] = static_cast<float>(residual[i] + corrected);
  }
}

// ---- sparse payloads: (uint32 index, value) pairs, the value as float32 (codec 0), IEEE half (1) or bfloat16 (2, nearest)

inline size_t pairStride(int codec) { return codec == 0 ? 8 : 6; }

// pairsEncode(indices, values, count, codec, out)
void PairsEncode(const Napi::CallbackInfo& info) {
  const uint32_t* indices = data<uint32_t>(info, 0);
  const float* values = data<float>(info, 1);
  const size_t count = static_cast<size_t>(number(info, 2));
  const int codec = integer(info, 3);
  uint8_t* out = data<uint8_t>(info, 4);
  const size_t stride = pairStride(codec);
  for (size_t j = 0; j < count; j++) {
    uint8_t* pair = out + j * stride;
    std::memcpy(pair, indices + j, 4);
    const uint32_t bits = bitsOf(values[j]);
    if (codec == 0) std::memcpy(pair + 4, &bits, 4);
    else {
      const uint16_t h = codec == 1 ? halfBits(bits)
                                    : (bits & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((bits >> 16) | 0x40u)
                                                                          : static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
      std::memcpy(pair + 4, &h, 2);
    }
  }
}

// pairsAccumulate(payload, count, codec, target) → −1, or the first index beyond target (the pairs before it added)
Napi::Value PairsAccumulate(const Napi::CallbackInfo& info) {
  const uint8_t* payload = data<uint8_t>(info, 0);
  const size_t count = static_cast<size_t>(number(info, 1));
  const int codec = integer(info, 2);
  float* target = data<float>(info, 3);
  const size_t n = length<float>(info, 3);
  const size_t stride = pairStride(codec);
  const float* halves = codec == 1 ? halfTable() : nullptr;
  for (size_t j = 0; j < count; j++) {
    const uint8_t* pair = payload + j * stride;
    uint32_t index;
    std::memcpy(&index, pair, 4);
    if (index >= n) return Napi::Number::New(info.Env(), index);
    float value;
    if (codec == 0) std::memcpy(&value, pair + 4, 4);
    else {
      uint16_t h;
      std::memcpy(&h, pair + 4, 2);
      value = codec == 1 ? halves[h] : floatOf(static_cast<uint32_t>(h) << 16);
    }
    target[index] += value;
  }
  return Napi::Number::New(info.Env(), -1);
}

// ---- EF-signSGD: residual += g; scale = mean |residual|; one bit per value (set: negative); residual −= ±scale

/** Pass 1, 8 values at once: residual += g, and |residual| summed into the 4 lanes (value i into lane i mod 4). */
__attribute__((target("avx2"))) size_t signAccumulateAvx2(const float* g, float* residual, size_t n, double* lanes) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256d sum = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r = _mm256_add_ps(_mm256_loadu_ps(residual + i), _mm256_loadu_ps(g + i));
    _mm256_storeu_ps(residual + i, r);
    const __m256 a = _mm256_and_ps(r, magnitude);
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));  // values 8j..8j+3: lanes 0..3
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));  // then 8j+4..8j+7: lanes 0..3
  }
  _mm256_storeu_pd(lanes, sum);
  return i;
}

/** Pass 2, 8 values a byte: the sign bits, and residual −= ±scale. */
__attribute__((target("avx2"))) size_t signBitsAvx2(float* residual, size_t n, float scale, uint8_t* out) {
  const __m256 plus = _mm256_set1_ps(scale), minus = _mm256_set1_ps(-scale), zero = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r = _mm256_loadu_ps(residual + i);
    const __m256 negative = _mm256_cmp_ps(r, zero, _CMP_LT_OQ);
    out[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(negative));
    _mm256_storeu_ps(residual + i, _mm256_sub_ps(r, _mm256_blendv_ps(plus, minus, negative)));
  }
  return i;
}

// signEncode(gradient, residual, out) → scale
Napi::Value SignEncode(const Napi::CallbackInfo& info) {
  const float* g = data<float>(info, 0);
  const size_t n = length<float>(info, 0);
  float* residual = data<float>(info, 1);
  uint8_t* out = data<uint8_t>(info, 2);
  double lanes[4] = {0, 0, 0, 0};
  for (size_t i = hasAvx2 ? signAccumulateAvx2(g, residual, n, lanes) : 0; i < n; i++) {
    residual[i] += g[i];
    lanes[i & 3] += std::fabs(static_cast<double>(residual[i]));
  }
  const float scale = static_cast<float>(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / n);
  const size_t done = hasAvx2 ? signBitsAvx2(residual, n, scale, out) : 0;
  if (done < n) out[done >> 3] = 0;
  for (size_t i = done; i < n; i++) {
    const bool negative = residual[i] < 0;
    if (negative) out[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
    residual[i] -= negative ? -scale : scale;
  }
  return Napi::Number::New(info.Env(), scale);
}

/** 8 values a byte: ±scale by the byte's bits. */
__attribute__((target("avx2"))) size_t signDecodeAvx2(const uint8_t* bits, float scale, float* target, size_t n, bool accumulate) {
  const __m256 plus = _mm256_set1_ps(scale), minus = _mm256_set1_ps(-scale);
  const __m256i position = _mm256_set_epi32(128, 64, 32, 16, 8, 4, 2, 1);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits[i >> 3]), position), position);
    const __m256 value = _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(set));
    _mm256_storeu_ps(target + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(target + i), value) : value);
  }
  return i;
}

// signDecode(bits, scale, target, accumulate)
void SignDecode(const Napi::CallbackInfo& info) {
  const uint8_t* bits = data<uint8_t>(info, 0);
  const float scale = static_cast<float>(number(info, 1));
  float* target = data<float>(info, 2);
  const size_t n = length<float>(info, 2);
  const bool accumulate = flag(info, 3);
  for (size_t i = hasAvx2 ? signDecodeAvx2(bits, scale, target, n, accumulate) : 0; i < n; i++) {
    const float value = bits[i >> 3] & (1u << (i & 7)) ? -scale : scale;
    target[i] = accumulate ? target[i] + value : value;
  }
}

}  // namespace

void addCodecs(Napi::Env env, Napi::Object exports) {
  exports.Set("fp16Encode", Napi::Function::New(env, Fp16Encode, "fp16Encode"));
  exports.Set("fp16Decode", Napi::Function::New(env, Fp16Decode, "fp16Decode"));
  exports.Set("bf16Encode", Napi::Function::New(env, Bf16Encode, "bf16Encode"));
  exports.Set("bf16Decode", Napi::Function::New(env, Bf16Decode, "bf16Decode"));
  exports.Set("int8Encode", Napi::Function::New(env, Int8Encode, "int8Encode"));
  exports.Set("int8Decode", Napi::Function::New(env, Int8Decode, "int8Decode"));
  exports.Set("qsgdEncode", Napi::Function::New(env, QsgdEncode, "qsgdEncode"));
  exports.Set("qsgdDecode", Napi::Function::New(env, QsgdDecode, "qsgdDecode"));
  exports.Set("dgcAccumulate", Napi::Function::New(env, DgcAccumulate, "dgcAccumulate"));
  exports.Set("pairsEncode", Napi::Function::New(env, PairsEncode, "pairsEncode"));
  exports.Set("pairsAccumulate", Napi::Function::New(env, PairsAccumulate, "pairsAccumulate"));
  exports.Set("signEncode", Napi::Function::New(env, SignEncode, "signEncode"));
  exports.Set("signDecode", Napi::Function::New(env, SignDecode, "signDecode"));
}

}  // namespace converge
