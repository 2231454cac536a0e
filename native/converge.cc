// converge's native kernels: OpenBLAS sgemm for the matrix products, plain C++ loops for the
// rest. Every function works in place on the memory of the Float32Arrays it is given (plain or
// SharedArrayBuffer-backed), allocates nothing, and runs on the calling thread: each worker
// thread is one core, so OpenBLAS is told to use one thread.

#define NAPI_VERSION 8
#define NODE_ADDON_API_DISABLE_DEPRECATED
#include <napi.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <xmmintrin.h>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);

namespace {

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

struct Conv {
  int channels, height, width, filters, kernel, pad, stride, outHeight, outWidth;
  int plane() const { return outHeight * outWidth; }  // output pixels per filter
  int patch() const { return channels * kernel * kernel; }  // rows of the im2col matrix
  size_t inSize() const { return static_cast<size_t>(channels) * height * width; }  // one input sample
};

// the geometry travels as nine integers from argument `at` on (no object look-ups per call)
Conv conv(const Napi::CallbackInfo& info, size_t at) {
  return {integer(info, at), integer(info, at + 1), integer(info, at + 2), integer(info, at + 3), integer(info, at + 4),
          integer(info, at + 5), integer(info, at + 6), integer(info, at + 7), integer(info, at + 8)};
}

// columns[(c·K + kh)·K + kw, oh·OW + ow] = x[c, oh·s − pad + kh, ow·s − pad + kw], 0 outside
void im2col(const float* x, const Conv& g, float* columns) {
  const int plane = g.plane();
  for (int c = 0; c < g.channels; c++) {
    const float* image = x + static_cast<size_t>(c) * g.height * g.width;
    for (int kh = 0; kh < g.kernel; kh++) {
      for (int kw = 0; kw < g.kernel; kw++) {
        float* row = columns + static_cast<size_t>((c * g.kernel + kh) * g.kernel + kw) * plane;
        for (int oh = 0; oh < g.outHeight; oh++) {
          const int ih = oh * g.stride - g.pad + kh;
          float* out = row + oh * g.outWidth;
          if (ih < 0 || ih >= g.height) {
            std::memset(out, 0, sizeof(float) * g.outWidth);
            continue;
          }
          const float* line = image + ih * g.width;
          if (g.stride == 1) {
            // the valid output range for this kw, then a straight copy
            const int first = std::max(0, g.pad - kw);
            const int last = std::min(g.outWidth, g.width + g.pad - kw);
            for (int ow = 0; ow < first; ow++) out[ow] = 0;
            if (last > first) std::memcpy(out + first, line + first - g.pad + kw, sizeof(float) * (last - first));
            for (int ow = std::max(first, last); ow < g.outWidth; ow++) out[ow] = 0;
          } else {
            for (int ow = 0; ow < g.outWidth; ow++) {
              const int iw = ow * g.stride - g.pad + kw;
              out[ow] = iw >= 0 && iw < g.width ? line[iw] : 0.0f;
            }
          }
        }
      }
    }
  }
}

// gradX = the adjoint of im2col applied to columns
void col2im(const float* columns, const Conv& g, float* gradX) {
  const int plane = g.plane();
  std::memset(gradX, 0, sizeof(float) * g.channels * g.height * g.width);
  for (int c = 0; c < g.channels; c++) {
    float* image = gradX + static_cast<size_t>(c) * g.height * g.width;
    for (int kh = 0; kh < g.kernel; kh++) {
      for (int kw = 0; kw < g.kernel; kw++) {
        const float* row = columns + static_cast<size_t>((c * g.kernel + kh) * g.kernel + kw) * plane;
        for (int oh = 0; oh < g.outHeight; oh++) {
          const int ih = oh * g.stride - g.pad + kh;
          if (ih < 0 || ih >= g.height) continue;
          float* line = image + ih * g.width;
          const float* in = row + oh * g.outWidth;
          if (g.stride == 1) {
            // the valid output range for this kw, then a straight add the compiler vectorises
            const int first = std::max(0, g.pad - kw);
            const int last = std::min(g.outWidth, g.width + g.pad - kw);
            float* target = line - g.pad + kw;
            for (int ow = first; ow < last; ow++) target[ow] += in[ow];
            continue;
          }
          for (int ow = 0; ow < g.outWidth; ow++) {
            const int iw = ow * g.stride - g.pad + kw;
            if (iw >= 0 && iw < g.width) line[iw] += in[ow];
          }
        }
      }
    }
  }
}

// ---- kernels, in the argument order of KernelSet (src/kernels/types.ts), geometry objects flattened
// to integers by the adapter in src/kernels/native.ts

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

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const bool transA = flag(info, 0), transB = flag(info, 1);
  const int m = integer(info, 2), n = integer(info, 3), k = integer(info, 4);
  const float alpha = static_cast<float>(number(info, 5));
  const float beta = static_cast<float>(number(info, 8));
  float* c = floats(info, 9);
  if (beta == 0.0f) std::memset(c, 0, sizeof(float) * m * n);  // so NaN already in c cannot leak through
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              floats(info, 6), transA ? m : k, floats(info, 7), transB ? k : n, beta, c, n);
  return info.Env().Undefined();
}

// out[n,f] = x[n,k] · w[f,k]ᵀ + bias[f]
Napi::Value DenseForward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float *x = floats(info, 0), *w = floats(info, 1), *bias = floats(info, 2);
  float* out = floats(info, 3);
  const int batch = integer(info, 4), inputs = integer(info, 5), outputs = integer(info, 6);
  for (int i = 0; i < batch; i++) std::memcpy(out + static_cast<size_t>(i) * outputs, bias, sizeof(float) * outputs);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, outputs, inputs, 1.0f, x, inputs, w, inputs, 1.0f, out, outputs);
  return info.Env().Undefined();
}

Napi::Value DenseBackward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float *x = floats(info, 0), *w = floats(info, 1), *gradOut = floats(info, 2);
  float *gradW = floats(info, 3), *gradBias = floats(info, 4);
  const bool wantGradX = !info[5].IsNull();
  const int batch = integer(info, 6), inputs = integer(info, 7), outputs = integer(info, 8);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, outputs, inputs, batch, 1.0f, gradOut, outputs, x, inputs, 0.0f, gradW, inputs);
  std::memset(gradBias, 0, sizeof(float) * outputs);
  for (int i = 0; i < batch; i++) {
    const float* row = gradOut + static_cast<size_t>(i) * outputs;
    for (int j = 0; j < outputs; j++) gradBias[j] += row[j];
  }
  if (wantGradX) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, inputs, outputs, 1.0f, gradOut, outputs, w, inputs, 0.0f,
                floats(info, 5), inputs);
  }
  return info.Env().Undefined();
}

Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float *x = floats(info, 0), *w = floats(info, 1), *bias = floats(info, 2);
  float* out = floats(info, 3);
  const int batch = integer(info, 4);
  float* columns = floats(info, 5);
  const Conv g = conv(info, 6);
  const int plane = g.plane(), patch = g.patch();
  const size_t inSize = g.inSize();
  for (int n = 0; n < batch; n++) {
    float* o = out + static_cast<size_t>(n) * g.filters * plane;
    for (int f = 0; f < g.filters; f++) std::fill(o + static_cast<size_t>(f) * plane, o + static_cast<size_t>(f + 1) * plane, bias[f]);
    im2col(x + n * inSize, g, columns);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.filters, plane, patch, 1.0f, w, patch, columns, plane, 1.0f, o, plane);
  }
  return info.Env().Undefined();
}

Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float *x = floats(info, 0), *w = floats(info, 1), *gradOut = floats(info, 2);
  float *gradW = floats(info, 3), *gradBias = floats(info, 4);
  const bool wantGradX = !info[5].IsNull();
  float* gradX = wantGradX ? floats(info, 5) : nullptr;
  const int batch = integer(info, 6);
  float* columns = floats(info, 7);
  const Conv g = conv(info, 8);
  const int plane = g.plane(), patch = g.patch();
  const size_t inSize = g.inSize();
  std::memset(gradBias, 0, sizeof(float) * g.filters);
  for (int n = 0; n < batch; n++) {
    const float* go = gradOut + static_cast<size_t>(n) * g.filters * plane;
    im2col(x + n * inSize, g, columns);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.filters, patch, plane, 1.0f, go, plane, columns, plane,
                n == 0 ? 0.0f : 1.0f, gradW, patch);
    for (int f = 0; f < g.filters; f++) {
      const float* row = go + static_cast<size_t>(f) * plane;
      float sum = 0;
      for (int i = 0; i < plane; i++) sum += row[i];
      gradBias[f] += sum;
    }
    if (wantGradX) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, patch, plane, g.filters, 1.0f, w, patch, go, plane, 0.0f, columns, plane);
      col2im(columns, g, gradX + n * inSize);
    }
  }
  return info.Env().Undefined();
}

Napi::Value MaxPoolForward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float* x = floats(info, 0);
  float* out = floats(info, 1);
  int32_t* argmax = ints(info, 2);
  const int batch = integer(info, 3);
  const int channels = integer(info, 4), height = integer(info, 5), width = integer(info, 6), size = integer(info, 7);
  const int outHeight = integer(info, 8), outWidth = integer(info, 9);
  size_t o = 0;
  for (int plane = 0; plane < batch * channels; plane++) {
    const int base = plane * height * width;
    for (int oh = 0; oh < outHeight; oh++) {
      for (int ow = 0; ow < outWidth; ow++, o++) {
        float best = -INFINITY;
        int bestIndex = base + oh * size * width + ow * size;
        for (int dh = 0; dh < size; dh++) {
          const int line = base + (oh * size + dh) * width + ow * size;
          for (int dw = 0; dw < size; dw++) {
            const float v = x[line + dw];
            if (v > best) {
              best = v;
              bestIndex = line + dw;
            }
          }
        }
        out[o] = best;
        argmax[o] = bestIndex;
      }
    }
  }
  return info.Env().Undefined();
}

Napi::Value MaxPoolBackward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float* gradOut = floats(info, 0);
  const int32_t* argmax = ints(info, 1);
  float* gradX = floats(info, 2);
  const int length = integer(info, 3), inputLength = integer(info, 4);
  std::memset(gradX, 0, sizeof(float) * inputLength);
  for (int i = 0; i < length; i++) gradX[argmax[i]] += gradOut[i];
  return info.Env().Undefined();
}

Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float* x = floats(info, 0);
  float* y = floats(info, 1);
  const int length = integer(info, 2);
  for (int i = 0; i < length; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  return info.Env().Undefined();
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float *y = floats(info, 0), *gradY = floats(info, 1);
  float* gradX = floats(info, 2);
  const int length = integer(info, 3);
  // both loads unconditional, so the compiler selects instead of branching: a branch on the sign
  // of activations is taken half the time at random, and mispredicting it cost 17× the forward pass
  for (int i = 0; i < length; i++) {
    const float g = gradY[i];
    gradX[i] = y[i] > 0.0f ? g : 0.0f;
  }
  return info.Env().Undefined();
}

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

#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

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

Napi::Value SoftmaxCrossEntropy(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float* logits = floats(info, 0);
  const int32_t* labels = ints(info, 1);
  const int batch = integer(info, 2), classes = integer(info, 3);
  float* grad = floats(info, 4);
  double total = 0;
  const double scale = 1.0 / batch;
  for (int i = 0; i < batch; i++) {
    const float* row = logits + static_cast<size_t>(i) * classes;
    float* g = grad + static_cast<size_t>(i) * classes;
    double max = -INFINITY;
    for (int j = 0; j < classes; j++) max = std::max(max, static_cast<double>(row[j]));
    double sum = 0;
    for (int j = 0; j < classes; j++) sum += std::exp(row[j] - max);
    const int label = labels[i];
    total += std::log(sum) - (row[label] - max);
    const double inverse = 1.0 / sum;
    for (int j = 0; j < classes; j++) g[j] = static_cast<float>((std::exp(row[j] - max) * inverse - (j == label ? 1.0 : 0.0)) * scale);
  }
  return Napi::Number::New(info.Env(), total / batch);
}

Napi::Value ReduceStrided(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  const float* source = floats(info, 0);
  const int64_t first = integer(info, 1), stride = integer(info, 2);
  const int count = integer(info, 3), start = integer(info, 4), end = integer(info, 5);
  float* target = floats(info, 6) + integer(info, 7);
  const float scale = static_cast<float>(number(info, 8));
  const float* base = source + first;
  // target may be one of the sources (the in-place all-reduce), so each block is summed into a
  // local buffer before it is written; float32 adds in rank order, exactly as the reference does
  constexpr int BLOCK = 512;
  float sum[BLOCK];
  for (int block = start; block < end; block += BLOCK) {
    const int length = std::min(BLOCK, end - block);
    const float* s0 = base + block;
    for (int i = 0; i < length; i++) sum[i] = s0[i];
    for (int r = 1; r < count; r++) {
      const float* sr = base + r * stride + block;
      for (int i = 0; i < length; i++) sum[i] += sr[i];
    }
    float* t = target + block;
    if (scale == 1.0f) std::memcpy(t, sum, sizeof(float) * length);
    else for (int i = 0; i < length; i++) t[i] = sum[i] * scale;
  }
  return info.Env().Undefined();
}

Napi::Value Zero(const Napi::CallbackInfo& info) {
  float* array = floats(info, 0);
  const int start = integer(info, 1), end = integer(info, 2);
  if (end > start) std::memset(array + start, 0, sizeof(float) * (end - start));
  return info.Env().Undefined();
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  float* target = floats(info, 0) + integer(info, 1);
  const float* source = floats(info, 2) + integer(info, 3);
  const int length = integer(info, 4);
  if (length > 0) std::memmove(target, source, sizeof(float) * length);
  return info.Env().Undefined();
}

Napi::Value AddInto(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  float* target = floats(info, 0) + integer(info, 1);
  const float* source = floats(info, 2) + integer(info, 3);
  const int length = integer(info, 4);
  for (int i = 0; i < length; i++) target[i] += source[i];
  return info.Env().Undefined();
}

// ---- optimiser updates over the flat buffer (src/kernels/reference.ts has the same loops)

Napi::Value SgdUpdate(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  float* p = floats(info, 0);
  const float* g = floats(info, 1);
  const int length = integer(info, 2);
  const float lr = static_cast<float>(number(info, 3)), wd = static_cast<float>(number(info, 4));
  for (int i = 0; i < length; i++) p[i] -= lr * (g[i] + wd * p[i]);
  return info.Env().Undefined();
}

Napi::Value MomentumUpdate(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  float* p = floats(info, 0);
  const float* g = floats(info, 1);
  float* v = floats(info, 2);
  const int length = integer(info, 3);
  const float lr = static_cast<float>(number(info, 4)), mu = static_cast<float>(number(info, 5)), wd = static_cast<float>(number(info, 6));
  const bool nesterov = flag(info, 7);
  for (int i = 0; i < length; i++) {
    const float gi = g[i] + wd * p[i];
    const float vi = v[i] = mu * v[i] + gi;
    p[i] -= lr * (nesterov ? gi + mu * vi : vi);
  }
  return info.Env().Undefined();
}

Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  FlushDenormals flush;
  float* p = floats(info, 0);
  const float* g = floats(info, 1);
  float *m = floats(info, 2), *v = floats(info, 3);
  const int length = integer(info, 4);
  const double stepSize = number(info, 5), sqrtCorrection2 = number(info, 6);
  const float beta1 = static_cast<float>(number(info, 7)), beta2 = static_cast<float>(number(info, 8));
  const double epsilon = number(info, 9);
  const float wd = static_cast<float>(number(info, 10));
  for (int i = 0; i < length; i++) {
    const float gi = g[i] + wd * p[i];
    const float mi = m[i] = beta1 * m[i] + (1 - beta1) * gi;
    const float vi = v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    p[i] -= static_cast<float>((stepSize * mi) / (std::sqrt(static_cast<double>(vi)) / sqrtCorrection2 + epsilon));
  }
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("blas", openblas_get_config());
  out.Set("core", openblas_get_corename());
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // one worker thread per core: OpenBLAS must not start threads of its own
  openblas_set_num_threads(1);
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("denseForward", Napi::Function::New(env, DenseForward, "denseForward"));
  exports.Set("denseBackward", Napi::Function::New(env, DenseBackward, "denseBackward"));
  exports.Set("convForward", Napi::Function::New(env, ConvForward, "convForward"));
  exports.Set("convBackward", Napi::Function::New(env, ConvBackward, "convBackward"));
  exports.Set("maxPoolForward", Napi::Function::New(env, MaxPoolForward, "maxPoolForward"));
  exports.Set("maxPoolBackward", Napi::Function::New(env, MaxPoolBackward, "maxPoolBackward"));
  exports.Set("reluForward", Napi::Function::New(env, ReluForward, "reluForward"));
  exports.Set("reluBackward", Napi::Function::New(env, ReluBackward, "reluBackward"));
  exports.Set("softmaxCrossEntropy", Napi::Function::New(env, SoftmaxCrossEntropy, "softmaxCrossEntropy"));
  exports.Set("batchNormForward", Napi::Function::New(env, BatchNormForward, "batchNormForward"));
  exports.Set("batchNormBackward", Napi::Function::New(env, BatchNormBackward, "batchNormBackward"));
  exports.Set("channelSums", Napi::Function::New(env, ChannelSums, "channelSums"));
  exports.Set("batchNormInputGradient", Napi::Function::New(env, BatchNormInputGradient, "batchNormInputGradient"));
  exports.Set("reduceStrided", Napi::Function::New(env, ReduceStrided, "reduceStrided"));
  exports.Set("zero", Napi::Function::New(env, Zero, "zero"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("addInto", Napi::Function::New(env, AddInto, "addInto"));
  exports.Set("sgdUpdate", Napi::Function::New(env, SgdUpdate, "sgdUpdate"));
  exports.Set("momentumUpdate", Napi::Function::New(env, MomentumUpdate, "momentumUpdate"));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate, "adamUpdate"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  return exports;
}

}  // namespace

NODE_API_MODULE(converge_native, Init)
