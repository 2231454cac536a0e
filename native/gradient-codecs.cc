// The gradient codecs of src/compress/quantize.ts and sparsify.ts: QSGD's stochastic levels,
// EF-signSGD's scaled signs, and top-k's error feedback with DGC's momentum correction — the same
// bits as src/kernels/reference-codecs.ts (see codecs.h).
#include "codecs.h"

namespace converge {
namespace {

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
  for (size_t i = hasAvx2 ? squaresAvx2(g, count, lanes) : 0; i < count; i++) lanes[i & 3] += static_cast<double>(g[i]) * g[i];
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
  for (size_t i = hasAvx2 ? dgcAvx2(g, scale, m, u, residual, n) : 0; i < n; i++) {
    const double corrected = m * u[i] + scale * g[i];  // the residual takes it unrounded, as the reference's expression does
    u[i] = static_cast<float>(corrected);
    residual[i] = static_cast<float>(residual[i] + corrected);
  }
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

void addGradientCodecs(Napi::Env env, Napi::Object exports) {
  exports.Set("qsgdEncode", Napi::Function::New(env, QsgdEncode, "qsgdEncode"));
  exports.Set("qsgdDecode", Napi::Function::New(env, QsgdDecode, "qsgdDecode"));
  exports.Set("dgcAccumulate", Napi::Function::New(env, DgcAccumulate, "dgcAccumulate"));
  exports.Set("signEncode", Napi::Function::New(env, SignEncode, "signEncode"));
  exports.Set("signDecode", Napi::Function::New(env, SignDecode, "signDecode"));
}

}  // namespace converge
