// converge's native kernels: OpenBLAS sgemm for the matrix products, plain C++ loops for the
// rest. Every function works in place on the memory of the Float32Arrays it is given (plain or
// SharedArrayBuffer-backed), allocates nothing, and runs on the calling thread: each worker
// thread is one core, so OpenBLAS is told to use one thread.

#include "common.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);

namespace converge {
void addBatchNorm(Napi::Env env, Napi::Object exports);  // native/batch-norm.cc
void addAead(Napi::Env env, Napi::Object exports);       // native/aead.cc
void addTopk(Napi::Env env, Napi::Object exports);       // native/topk.cc
void addCodecs(Napi::Env env, Napi::Object exports);     // native/codecs.cc
void addGradientCodecs(Napi::Env env, Napi::Object exports);  // native/gradient-codecs.cc
}

namespace {

using namespace converge;

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
  // accumulate: gradW += the product (the product's sums end in registers, then add to gradW, as one
  // addition of the whole would; OpenBLAS adds per block of its k dimension beyond a few hundred rows),
  // gradBias += the row sum, taken whole first
  const bool accumulate = info.Length() > 9 && info[9].IsBoolean() && info[9].As<Napi::Boolean>().Value();
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, outputs, inputs, batch, 1.0f, gradOut, outputs, x, inputs,
              accumulate ? 1.0f : 0.0f, gradW, inputs);
  thread_local std::vector<float> rowSum;
  float* sum = gradBias;
  if (accumulate) {
    rowSum.assign(outputs, 0.0f);
    sum = rowSum.data();
  } else {
    std::memset(gradBias, 0, sizeof(float) * outputs);
  }
  for (int i = 0; i < batch; i++) {
    const float* row = gradOut + static_cast<size_t>(i) * outputs;
    for (int j = 0; j < outputs; j++) sum[j] += row[j];
  }
  if (accumulate) for (int j = 0; j < outputs; j++) gradBias[j] += sum[j];
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

// Hogwild!'s replica merge (src/strategies/replica.ts): shared += (local − base) × (1 where shared
// still equals base, else ½), in float32, then local = base = shared. Blends, not branches: which
// coordinates another worker changed follows no pattern. No denormal flushing: the reference
// keeps them, and this writes parameters.
Napi::Value ReplicaMerge(const Napi::CallbackInfo& info) {
  float* __restrict shared = floats(info, 0);
  float* __restrict local = floats(info, 1);
  float* __restrict base = floats(info, 2);
  const int length = integer(info, 3);
  int i = 0;
  const __m128 one = _mm_set1_ps(1.0f), half = _mm_set1_ps(0.5f);
  for (; i + 4 <= length; i += 4) {
    const __m128 s = _mm_loadu_ps(shared + i), b = _mm_loadu_ps(base + i);
    const __m128 change = _mm_sub_ps(_mm_loadu_ps(local + i), b);
    const __m128 weight = _mm_blendv_ps(half, one, _mm_cmpeq_ps(s, b));
    const __m128 value = _mm_add_ps(s, _mm_mul_ps(change, weight));
    _mm_storeu_ps(shared + i, value);
    _mm_storeu_ps(local + i, value);
    _mm_storeu_ps(base + i, value);
  }
  for (; i < length; i++) {
    const float change = local[i] - base[i];
    const float value = shared[i] + change * (shared[i] == base[i] ? 1.0f : 0.5f);
    shared[i] = value;
    local[i] = value;
    base[i] = value;
  }
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

// Hogwild!'s per-example steps on a sparse linear model, a minibatch of them per call (types.ts
// says what; reference.ts is the same loop): one call from JavaScript per example cost more than
// the ~40 multiply-adds of a row, and a minibatch per call ran one worker at 2.47M samples/s where
// the JavaScript loop ran 1.50M (RCV1-like set, epochs 2-5). Arithmetic in double as JavaScript's,
// stored to float32; no denormal flushing (the reference keeps them).
Napi::Value SparseLinearSteps(const Napi::CallbackInfo& info) {
  const int32_t* rowPtr = ints(info, 0);
  const int32_t* indices = ints(info, 1);
  const float* values = floats(info, 2);
  const float* y = floats(info, 3);
  const uint32_t* order = info[4].As<Napi::Uint32Array>().Data();
  const int first = integer(info, 5), count = integer(info, 6);
  float* params = floats(info, 7);
  const int features = integer(info, 8);
  const double lr = number(info, 9), l2 = number(info, 10), interceptRate = number(info, 11);
  const bool hinge = flag(info, 12);
  double total = 0;
  for (int e = 0; e < count; e++) {
    const int i = order[first + e];
    const int start = rowPtr[i], end = rowPtr[i + 1];
    double z = 0;
    for (int k = start; k < end; k++) z += static_cast<double>(values[k]) * params[indices[k]];
    z += params[features];
    double loss, slope;
    if (!hinge) {
      loss = (z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z))) - y[i] * z;
      slope = 1 / (1 + std::exp(-z)) - y[i];
    } else {
      const double s = 2.0 * y[i] - 1;
      loss = s * z < 1 ? 1 - s * z : 0;
      slope = s * z < 1 ? -s : 0;
    }
    for (int k = start; k < end; k++) {
      const int j = indices[k];
      params[j] = static_cast<float>(params[j] - lr * (slope * values[k] + l2 * params[j]));
    }
    params[features] = static_cast<float>(params[features] - lr * interceptRate * slope);
    total += loss;
  }
  return Napi::Number::New(info.Env(), total);
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
  converge::addBatchNorm(env, exports);
  converge::addAead(env, exports);
  converge::addTopk(env, exports);
  converge::addCodecs(env, exports);
  converge::addGradientCodecs(env, exports);
  exports.Set("reduceStrided", Napi::Function::New(env, ReduceStrided, "reduceStrided"));
  exports.Set("zero", Napi::Function::New(env, Zero, "zero"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("addInto", Napi::Function::New(env, AddInto, "addInto"));
  exports.Set("replicaMerge", Napi::Function::New(env, ReplicaMerge, "replicaMerge"));
  exports.Set("sgdUpdate", Napi::Function::New(env, SgdUpdate, "sgdUpdate"));
  exports.Set("momentumUpdate", Napi::Function::New(env, MomentumUpdate, "momentumUpdate"));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate, "adamUpdate"));
  exports.Set("sparseLinearSteps", Napi::Function::New(env, SparseLinearSteps, "sparseLinearSteps"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  return exports;
}

}  // namespace

NODE_API_MODULE(converge_native, Init)
