// The value codecs (src/compress/codecs.ts, src/tensor/precision.ts, sparse payloads): fp16 and
// bf16 conversion, stochastic bf16 and int8 block rounding, and the (index, value) pairs of sparse
// payloads — the same bits as src/kernels/reference-codecs.ts (see codecs.h).
#include "codecs.h"

namespace converge {
namespace {

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

/** float32 bits rounded stochastically to bfloat16 bits with 16 bits of noise: a carry out of the dropped bits rounds the
 *  magnitude up (probability: their fraction); inf and NaN are kept. */
inline uint32_t bf16Stochastic(uint32_t bits, uint32_t noise) {
  return (bits & 0x7f800000u) == 0x7f800000u ? bits >> 16 : (bits + noise) >> 16;
}

/** bf16Stochastic in 8 lanes (each lane's result in its low 16 bits). */
__attribute__((target("avx2"))) inline __m256i bf16Stochastic8(__m256i bits, __m256i noise) {
  const __m256i exponent = _mm256_set1_epi32(0x7f800000);
  const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent), exponent);  // inf, NaN: kept
  return _mm256_srli_epi32(_mm256_blendv_epi8(_mm256_add_epi32(bits, noise), bits, special), 16);
}

/** 8 lanes' low 16 bits stored to out[0, 8) (the pack works within 128-bit lanes: put the two halves side by side). */
__attribute__((target("avx2"))) inline void storeHalves8(uint16_t* out, __m256i lanes) {
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lanes, lanes), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(packed));
}

/** Stochastic bf16, 8 values at once: the same noise (the stream's next numbers' top 16 bits), the same carries. */
__attribute__((target("avx2"))) size_t bf16StochasticAvx2(const uint32_t* words, size_t n, uint16_t* out, uint32_t& state) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i));
    storeHalves8(out + i, bf16Stochastic8(bits, _mm256_srli_epi32(nextBits8(state), 16)));
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
    out[i] = static_cast<uint16_t>(bf16Stochastic(bits, nextBits(state) >> 16));
  }
}

/** replicaMergeBf16, 8 values at once: the same arithmetic in floats, the same noise and carries as the scalar loop. */
__attribute__((target("avx2"))) size_t replicaMergeBf16Avx2(uint16_t* shared, float* local, float* base, size_t n, uint32_t& state) {
  const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i noise = _mm256_srli_epi32(nextBits8(state), 16);
    const __m128i stored = _mm_loadu_si128(reinterpret_cast<const __m128i*>(shared + i));
    const __m256 now = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(stored), 16));
    const __m256 b = _mm256_loadu_ps(base + i);
    const __m256 change = _mm256_sub_ps(_mm256_loadu_ps(local + i), b);
    const __m256 weight = _mm256_blendv_ps(half, one, _mm256_cmp_ps(now, b, _CMP_EQ_OQ));
    const __m256i bits = _mm256_castps_si256(_mm256_add_ps(now, _mm256_mul_ps(change, weight)));
    const __m256i rounded = bf16Stochastic8(bits, noise);
    storeHalves8(shared + i, rounded);
    const __m256 value = _mm256_castsi256_ps(_mm256_slli_epi32(rounded, 16));
    _mm256_storeu_ps(local + i, value);
    _mm256_storeu_ps(base + i, value);
  }
  return i;
}

// replicaMergeBf16(shared, local, base, random): Hogwild!'s replica merge into a bf16 shared array
void ReplicaMergeBf16(const Napi::CallbackInfo& info) {
  uint16_t* shared = data<uint16_t>(info, 0);
  float* local = data<float>(info, 1);
  float* base = data<float>(info, 2);
  const size_t n = length<float>(info, 1);
  uint32_t state = static_cast<uint32_t>(number(info, 3));
  for (size_t i = hasAvx2 ? replicaMergeBf16Avx2(shared, local, base, n, state) : 0; i < n; i++) {
    const uint32_t noise = nextBits(state) >> 16;
    const float now = floatOf(static_cast<uint32_t>(shared[i]) << 16);
    const float change = local[i] - base[i];
    const uint32_t bits = bitsOf(now + (now == base[i] ? change : change * 0.5f));
    const uint32_t rounded = bf16Stochastic(bits, noise);
    shared[i] = static_cast<uint16_t>(rounded);
    local[i] = base[i] = floatOf(rounded << 16);
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

}  // namespace

void addCodecs(Napi::Env env, Napi::Object exports) {
  exports.Set("fp16Encode", Napi::Function::New(env, Fp16Encode, "fp16Encode"));
  exports.Set("fp16Decode", Napi::Function::New(env, Fp16Decode, "fp16Decode"));
  exports.Set("bf16Encode", Napi::Function::New(env, Bf16Encode, "bf16Encode"));
  exports.Set("bf16Decode", Napi::Function::New(env, Bf16Decode, "bf16Decode"));
  exports.Set("replicaMergeBf16", Napi::Function::New(env, ReplicaMergeBf16, "replicaMergeBf16"));
  exports.Set("int8Encode", Napi::Function::New(env, Int8Encode, "int8Encode"));
  exports.Set("int8Decode", Napi::Function::New(env, Int8Decode, "int8Decode"));
  exports.Set("pairsEncode", Napi::Function::New(env, PairsEncode, "pairsEncode"));
  exports.Set("pairsAccumulate", Napi::Function::New(env, PairsAccumulate, "pairsAccumulate"));
}

}  // namespace converge
