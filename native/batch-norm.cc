// Batch norm's native kernels (plain NCHW images and channel-blocked ones), and the sums
// synchronised batch norm reduces across ranks. Each is held to its reference in
// src/kernels/reference.ts by src/kernels/native.test.ts.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace converge {
namespace {

// Batch norm per channel of x[N, C, plane]. Each row of a channel (one sample's plane) is summed
// in BLOCK-long pieces over LANES float accumulators (independent, so the compiler vectorises
// them; one accumulator makes every addition wait for the last), and the pieces in double: the
// error stays that of a sum of BLOCK floats, whatever the image size. Statistics come from one
// pass, shifted by the channel's first value (which keeps Σd² − (Σd)²/n from cancelling). Each
// kernel is compiled for AVX-512, AVX2 and the baseline; the loader picks what the CPU has.
constexpr int LANES = 16;
constexpr int BLOCK = 512;

template <class Term>
static inline double blockedSum(int n, Term term) {
  double total = 0;
  for (int start = 0; start < n; start += BLOCK) {
    const int end = std::min(n, start + BLOCK);
    float lane[LANES] = {0};
    int i = start;
    for (; i + LANES <= end; i += LANES)
      for (int l = 0; l < LANES; l++) lane[l] += term(i + l);
    double piece = 0;
    for (; i < end; i++) piece += term(i);
    for (int l = 0; l < LANES; l++) piece += lane[l];
    total += piece;
  }
  return total;
}

CLONES static void batchNormForward(const float* x, const float* gamma, const float* beta, float* out, float* normalised, float* inverseStd,
                                    float* runningMean, float* runningVar, int batch, int channels, int plane, bool training, double momentum, double epsilon) {
  const double count = static_cast<double>(batch) * plane;
  for (int c = 0; c < channels; c++) {
    double mean, inverse;
    // x − mean as (x − shift) − (mean − shift): the first difference is exact for values near the
    // shift, and the second keeps the mean's digits that a float mean near 1,000 would lose
    float shift = 0;
    if (training) {
      shift = x[static_cast<size_t>(c) * plane];
      double sum = 0, squares = 0;
      for (int n = 0; n < batch; n++) {
        const float* row = x + (static_cast<size_t>(n) * channels + c) * plane;
        sum += blockedSum(plane, [&](int i) { return row[i] - shift; });
        squares += blockedSum(plane, [&](int i) { const float d = row[i] - shift; return d * d; });
      }
      const double shifted = sum / count;
      mean = shift + shifted;
      const double deviations = std::max(0.0, squares - sum * shifted);  // Σ (x − mean)²
      inverse = 1.0 / std::sqrt(deviations / count + epsilon);
      inverseStd[c] = static_cast<float>(inverse);
      runningMean[c] = static_cast<float>((1 - momentum) * runningMean[c] + momentum * mean);
      runningVar[c] = static_cast<float>((1 - momentum) * runningVar[c] + momentum * (count > 1 ? deviations / (count - 1) : deviations));
    } else {
      mean = runningMean[c];
      inverse = 1.0 / std::sqrt(static_cast<double>(runningVar[c]) + epsilon);
    }
    const float m = static_cast<float>(mean - shift), s = static_cast<float>(inverse), g = gamma[c], b = beta[c];
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * channels + c) * plane;
      for (int i = 0; i < plane; i++) {
        const float normal = ((x[at + i] - shift) - m) * s;
        normalised[at + i] = normal;
        out[at + i] = g * normal + b;
      }
    }
  }
}

CLONES static void batchNormBackward(const float* gradOut, const float* normalised, const float* inverseStd, const float* gamma, float* gradGamma,
                                     float* gradBeta, float* gradX, int batch, int channels, int plane) {
  const double count = static_cast<double>(batch) * plane;
  for (int c = 0; c < channels; c++) {
    double sumDy = 0, sumDyX = 0;
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * channels + c) * plane;
      const float *dy = gradOut + at, *xh = normalised + at;
      sumDy += blockedSum(plane, [&](int i) { return dy[i]; });
      sumDyX += blockedSum(plane, [&](int i) { return dy[i] * xh[i]; });
    }
    gradGamma[c] = static_cast<float>(sumDyX);
    gradBeta[c] = static_cast<float>(sumDy);
    if (!gradX) continue;
    const float scale = gamma[c] * inverseStd[c];
    const float meanDy = static_cast<float>(sumDy / count), meanDyX = static_cast<float>(sumDyX / count);
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * channels + c) * plane;
      for (int i = 0; i < plane; i++) gradX[at + i] = scale * (gradOut[at + i] - meanDy - normalised[at + i] * meanDyX);
    }
  }
}

// The same for channel-blocked x[N, C/B, plane, B]: the B channels of a block side by side, so
// a pixel's B values are one vector (GCC's vector extensions: one AVX-512 register for B = 16,
// two AVX2 ones, …), one lane per channel; each lane sums BLOCK pixels in float, then in double.
// (spelled out per width: GCC does not carry vector_size through a dependent alias template)
template <int B>
struct LanesOf;
template <>
struct LanesOf<8> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct LanesOf<16> {
  typedef float type __attribute__((vector_size(64)));
};
template <int B>
using Lanes = typename LanesOf<B>::type;

// (always inlined: a vector wider than the baseline's registers passed between functions
// compiled for different CPUs would cross an ABI boundary; inlined, none does, and GCC's
// warning about that boundary does not apply)
#pragma GCC diagnostic ignored "-Wpsabi"
template <int B>
__attribute__((always_inline)) static inline Lanes<B> load(const float* p) {
  Lanes<B> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int B>
__attribute__((always_inline)) static inline void store(float* p, Lanes<B> v) {
  std::memcpy(p, &v, sizeof v);
}

template <int B>
__attribute__((always_inline)) static inline Lanes<B> splat(float value) {
  float values[B];
  for (int l = 0; l < B; l++) values[l] = value;
  return load<B>(values);
}

/** dx = scale · (dy − meanDy − x̂ · meanDyX) over one block of B channels of a blocked image, per lane. */
template <int B>
__attribute__((always_inline)) static inline void inputGradientOfGroup(const float* gradOut, const float* normalised, float* gradX, Lanes<B> scale, Lanes<B> meanDy,
                                                                       Lanes<B> meanDyX, int batch, int groups, int group, int plane) {
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * groups + group) * plane * B;
      for (int i = 0; i < plane; i++) {
        const size_t j = at + static_cast<size_t>(i) * B;
        store<B>(gradX + j, scale * (load<B>(gradOut + j) - meanDy - load<B>(normalised + j) * meanDyX));
      }
    }
}

template <int B>
CLONES static void batchNormForwardBlocked(const float* x, const float* gamma, const float* beta, float* out, float* normalised, float* inverseStd,
                                           float* runningMean, float* runningVar, int batch, int channels, int plane, bool training, double momentum, double epsilon) {
  const double count = static_cast<double>(batch) * plane;
  const int groups = channels / B;
  for (int group = 0; group < groups; group++) {
    const int first = group * B;
    float shiftOf[B] = {0}, mOf[B], sOf[B];
    if (training) {
      std::memcpy(shiftOf, x + static_cast<size_t>(group) * plane * B, sizeof shiftOf);
      const Lanes<B> shift = load<B>(shiftOf);
      double sum[B] = {0}, squares[B] = {0};
      for (int n = 0; n < batch; n++) {
        const float* rows = x + (static_cast<size_t>(n) * groups + group) * plane * B;
        for (int start = 0; start < plane; start += BLOCK) {
          const int end = std::min(plane, start + BLOCK);
          Lanes<B> piece = splat<B>(0), pieceSquares = splat<B>(0);
          for (int i = start; i < end; i++) {
            const Lanes<B> d = load<B>(rows + static_cast<size_t>(i) * B) - shift;
            piece += d;
            pieceSquares += d * d;
          }
          float p[B] = {0}, q[B] = {0};
          store<B>(p, piece);
          store<B>(q, pieceSquares);
          for (int l = 0; l < B; l++) sum[l] += p[l], squares[l] += q[l];
        }
      }
      for (int l = 0; l < B; l++) {
        const int c = first + l;
        const double shifted = sum[l] / count, mean = shiftOf[l] + shifted;
        const double deviations = std::max(0.0, squares[l] - sum[l] * shifted);
        const double inverse = 1.0 / std::sqrt(deviations / count + epsilon);
        inverseStd[c] = static_cast<float>(inverse);
        runningMean[c] = static_cast<float>((1 - momentum) * runningMean[c] + momentum * mean);
        runningVar[c] = static_cast<float>((1 - momentum) * runningVar[c] + momentum * (count > 1 ? deviations / (count - 1) : deviations));
        mOf[l] = static_cast<float>(mean - shiftOf[l]);
        sOf[l] = static_cast<float>(inverse);
      }
    } else {
      for (int l = 0; l < B; l++) {
        mOf[l] = runningMean[first + l];
        sOf[l] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(runningVar[first + l]) + epsilon));
      }
    }
    const Lanes<B> shift = load<B>(shiftOf), m = load<B>(mOf), s = load<B>(sOf), g = load<B>(gamma + first), b = load<B>(beta + first);
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * groups + group) * plane * B;
      for (int i = 0; i < plane; i++) {
        const size_t j = at + static_cast<size_t>(i) * B;
        const Lanes<B> normal = ((load<B>(x + j) - shift) - m) * s;
        store<B>(normalised + j, normal);
        store<B>(out + j, g * normal + b);
      }
    }
  }
}

template <int B>
CLONES static void batchNormBackwardBlocked(const float* gradOut, const float* normalised, const float* inverseStd, const float* gamma, float* gradGamma,
                                            float* gradBeta, float* gradX, int batch, int channels, int plane) {
  const double count = static_cast<double>(batch) * plane;
  const int groups = channels / B;
  for (int group = 0; group < groups; group++) {
    const int first = group * B;
    double sumDy[B] = {0}, sumDyX[B] = {0};
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * groups + group) * plane * B;
      for (int start = 0; start < plane; start += BLOCK) {
        const int end = std::min(plane, start + BLOCK);
        Lanes<B> dy = splat<B>(0), dyx = splat<B>(0);
        for (int i = start; i < end; i++) {
          const size_t j = at + static_cast<size_t>(i) * B;
          const Lanes<B> d = load<B>(gradOut + j);
          dy += d;
          dyx += d * load<B>(normalised + j);
        }
        float p[B] = {0}, q[B] = {0};
        store<B>(p, dy);
        store<B>(q, dyx);
        for (int l = 0; l < B; l++) sumDy[l] += p[l], sumDyX[l] += q[l];
      }
    }
    float scaleOf[B], meanDyOf[B], meanDyXOf[B];
    for (int l = 0; l < B; l++) {
      gradGamma[first + l] = static_cast<float>(sumDyX[l]);
      gradBeta[first + l] = static_cast<float>(sumDy[l]);
      scaleOf[l] = gamma[first + l] * inverseStd[first + l];
      meanDyOf[l] = static_cast<float>(sumDy[l] / count);
      meanDyXOf[l] = static_cast<float>(sumDyX[l] / count);
    }
    if (!gradX) continue;
    const Lanes<B> scale = load<B>(scaleOf), meanDy = load<B>(meanDyOf), meanDyX = load<B>(meanDyXOf);
    inputGradientOfGroup<B>(gradOut, normalised, gradX, scale, meanDy, meanDyX, batch, groups, group, plane);
  }
}

// What synchronised batch norm reduces across ranks, and the input gradient from the reduced
// sums: Σ x or Σ (x − centre)² per channel (float pieces summed in double, as above), and
// dx = γ/σ · (dy − Σdy/count − x̂ · Σdy·x̂/count).
CLONES static void channelSums(const float* x, const float* centre, float* out, int batch, int channels, int plane) {
  for (int c = 0; c < channels; c++) {
    const float m = centre ? centre[c] : 0.0f;
    double total = 0;
    for (int n = 0; n < batch; n++) {
      const float* row = x + (static_cast<size_t>(n) * channels + c) * plane;
      total += centre ? blockedSum(plane, [&](int i) { const float d = row[i] - m; return d * d; }) : blockedSum(plane, [&](int i) { return row[i]; });
    }
    out[c] = static_cast<float>(total);
  }
}

template <int B>
CLONES static void channelSumsBlocked(const float* x, const float* centre, float* out, int batch, int channels, int plane) {
  const int groups = channels / B;
  for (int group = 0; group < groups; group++) {
    float centreOf[B] = {0};
    if (centre) std::memcpy(centreOf, centre + group * B, sizeof centreOf);
    const Lanes<B> m = load<B>(centreOf);
    double total[B] = {0};
    for (int n = 0; n < batch; n++) {
      const float* rows = x + (static_cast<size_t>(n) * groups + group) * plane * B;
      for (int start = 0; start < plane; start += BLOCK) {
        const int end = std::min(plane, start + BLOCK);
        Lanes<B> piece = splat<B>(0);
        if (centre)
          for (int i = start; i < end; i++) {
            const Lanes<B> d = load<B>(rows + static_cast<size_t>(i) * B) - m;
            piece += d * d;
          }
        else
          for (int i = start; i < end; i++) piece += load<B>(rows + static_cast<size_t>(i) * B);
        float p[B] = {0};
        store<B>(p, piece);
        for (int l = 0; l < B; l++) total[l] += p[l];
      }
    }
    for (int l = 0; l < B; l++) out[group * B + l] = static_cast<float>(total[l]);
  }
}

CLONES static void batchNormInputGradient(const float* gradOut, const float* normalised, const float* inverseStd, const float* gamma, const float* sumDy,
                                          const float* sumDyX, double count, float* gradX, int batch, int channels, int plane) {
  for (int c = 0; c < channels; c++) {
    const float scale = gamma[c] * inverseStd[c], meanDy = static_cast<float>(sumDy[c] / count), meanDyX = static_cast<float>(sumDyX[c] / count);
    for (int n = 0; n < batch; n++) {
      const size_t at = (static_cast<size_t>(n) * channels + c) * plane;
      for (int i = 0; i < plane; i++) gradX[at + i] = scale * (gradOut[at + i] - meanDy - normalised[at + i] * meanDyX);
    }
  }
}

template <int B>
CLONES static void batchNormInputGradientBlocked(const float* gradOut, const float* normalised, const float* inverseStd, const float* gamma, const float* sumDy,
                                                 const float* sumDyX, double count, float* gradX, int batch, int channels, int plane) {
  const int groups = channels / B;
  for (int group = 0; group < groups; group++) {
    float scaleOf[B], meanDyOf[B], meanDyXOf[B];
    for (int l = 0; l < B; l++) {
      const int c = group * B + l;
      scaleOf[l] = gamma[c] * inverseStd[c];
      meanDyOf[l] = static_cast<float>(sumDy[c] / count);
      meanDyXOf[l] = static_cast<float>(sumDyX[c] / count);
    }
    const Lanes<B> scale = load<B>(scaleOf), meanDy = load<B>(meanDyOf), meanDyX = load<B>(meanDyXOf);
    inputGradientOfGroup<B>(gradOut, normalised, gradX, scale, meanDy, meanDyX, batch, groups, group, plane);
  }
}

/** The kernel for a channel block of 1 (plain), 8 or 16; else a RangeError thrown and null. */
template <class Kernel>
Kernel byBlock(const Napi::CallbackInfo& info, const char* name, int block, Kernel plain, Kernel eight, Kernel sixteen) {
  if (block == 1) return plain;
  if (block == 8) return eight;
  if (block == 16) return sixteen;
  Napi::RangeError::New(info.Env(), std::string(name) + ": channel block " + std::to_string(block) + " is not 1, 8 or 16").ThrowAsJavaScriptException();
  return nullptr;
}

Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  auto kernel = byBlock(info, "batchNormForward", integer(info, 11), batchNormForward, batchNormForwardBlocked<8>, batchNormForwardBlocked<16>);
  if (kernel) kernel(floats(info, 0), floats(info, 1), floats(info, 2), floats(info, 3), floats(info, 4), floats(info, 5), floats(info, 6), floats(info, 7),
                     integer(info, 8), integer(info, 9), integer(info, 10), flag(info, 12), number(info, 13), number(info, 14));
  return info.Env().Undefined();
}

Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  auto kernel = byBlock(info, "batchNormBackward", integer(info, 10), batchNormBackward, batchNormBackwardBlocked<8>, batchNormBackwardBlocked<16>);
  if (kernel) kernel(floats(info, 0), floats(info, 1), floats(info, 2), floats(info, 3), floats(info, 4), floats(info, 5),
                     info[6].IsNull() ? nullptr : floats(info, 6), integer(info, 7), integer(info, 8), integer(info, 9));
  return info.Env().Undefined();
}

// channelSums(x, centre | null, out, batch, channels, plane, block)
Napi::Value ChannelSums(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  auto kernel = byBlock(info, "channelSums", integer(info, 6), channelSums, channelSumsBlocked<8>, channelSumsBlocked<16>);
  if (kernel) kernel(floats(info, 0), info[1].IsNull() ? nullptr : floats(info, 1), floats(info, 2), integer(info, 3), integer(info, 4), integer(info, 5));
  return info.Env().Undefined();
}

// batchNormInputGradient(gradOut, normalised, inverseStd, gamma, sumDy, sumDyX, count, gradX, batch, channels, plane, block)
Napi::Value BatchNormInputGradient(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  auto kernel = byBlock(info, "batchNormInputGradient", integer(info, 11), batchNormInputGradient, batchNormInputGradientBlocked<8>, batchNormInputGradientBlocked<16>);
  if (kernel) kernel(floats(info, 0), floats(info, 1), floats(info, 2), floats(info, 3), floats(info, 4), floats(info, 5), number(info, 6), floats(info, 7),
                     integer(info, 8), integer(info, 9), integer(info, 10));
  return info.Env().Undefined();
}

}  // namespace

void addBatchNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("batchNormForward", Napi::Function::New(env, BatchNormForward, "batchNormForward"));
  exports.Set("batchNormBackward", Napi::Function::New(env, BatchNormBackward, "batchNormBackward"));
  exports.Set("channelSums", Napi::Function::New(env, ChannelSums, "channelSums"));
  exports.Set("batchNormInputGradient", Napi::Function::New(env, BatchNormInputGradient, "batchNormInputGradient"));
}

}  // namespace converge
