// Top-k sparsification's selection (src/compress/sparsify.ts): the indices of the k largest
// magnitudes, in index order, the lowest indices first among ties at the cut — the same answer as
// the reference kernel (src/kernels/reference.ts), by the same plan: a threshold from a strided
// sample, the candidates above it, the k-th largest among them by selection, one ordered scan.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace converge {
namespace {

constexpr size_t kSamples = 4096;

// topkIndices(values, k, chosen) → k
Napi::Value TopkIndices(const Napi::CallbackInfo& info) {
  auto array = info[0].As<Napi::TypedArrayOf<float>>();
  const float* v = array.Data();
  const size_t n = array.ElementLength();
  const size_t k = static_cast<size_t>(integer(info, 1));
  uint32_t* chosen = info[2].As<Napi::TypedArrayOf<uint32_t>>().Data();
  thread_local std::vector<float> sample, magnitudes, work;
  thread_local std::vector<uint32_t> candidates;
  float threshold = 0;
  if (2 * k < n) {
    const size_t samples = std::min(n, kSamples);
    sample.resize(samples);
    for (size_t s = 0; s < samples; s++) sample[s] = std::fabs(v[(s * n) / samples]);
    const size_t rank = std::min(samples - 1, (samples * 2 * k) / n);
    std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<float>());
    threshold = sample[rank];
  }
  for (;;) {
    candidates.clear();
    magnitudes.clear();
    for (size_t i = 0; i < n; i++) {
      const float m = std::fabs(v[i]);
      if (m >= threshold) {
        candidates.push_back(static_cast<uint32_t>(i));
        magnitudes.push_back(m);
      }
    }
    if (candidates.size() >= k || threshold == 0) break;
    threshold /= 4;  // the sample misjudged: widen
  }
  const size_t count = candidates.size();
  work.assign(magnitudes.begin(), magnitudes.end());
  std::nth_element(work.begin(), work.begin() + (k - 1), work.end(), std::greater<float>());
  const float kth = work[k - 1];
  size_t above = 0;
  for (size_t j = 0; j < count; j++) above += magnitudes[j] > kth;
  size_t ties = k - above, written = 0;
  for (size_t j = 0; j < count && written < k; j++) {
    if (magnitudes[j] > kth) chosen[written++] = candidates[j];
    else if (magnitudes[j] == kth && ties > 0) {
      ties--;
      chosen[written++] = candidates[j];
    }
  }
  return Napi::Number::New(info.Env(), static_cast<double>(written));
}

}  // namespace

void addTopk(Napi::Env env, Napi::Object exports) {
  exports.Set("topkIndices", Napi::Function::New(env, TopkIndices, "topkIndices"));
}

}  // namespace converge
