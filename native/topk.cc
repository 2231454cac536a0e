// Top-k sparsification's selection (src/compress/sparsify.ts): the indices of the k largest
// magnitudes, in index order, the lowest indices first among ties at the cut — the same answer as
// the reference kernel (src/kernels/reference.ts). A small k by the reference's plan: a threshold
// from a strided sample, the candidates above it, the k-th largest among them by selection, one
// ordered scan; a large k (more than 1/64 of the values) by radix selection on the bits.
#include "common.h"

#include <algorithm>
#include <cstring>
#include <cmath>
#include <functional>
#include <vector>

namespace converge {
namespace {

constexpr size_t kSamples = 4096;

inline uint32_t magnitudeBits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return bits & 0x7fffffffu;  // for floats of one sign, the bits order as the values do
}

/**
 * A large k (DGC's warm-up sends up to a quarter of the values): the k-th largest magnitude by
 * radix selection on its bits — 11, 11 and 9 bits, a histogram pass each, the later passes over
 * the values whose leading bits match — then one ordered scan. The same answer as the sampled
 * plan (it is unique), without a selection over a large candidate set.
 */
size_t topkByRadix(const float* v, size_t n, size_t k, uint32_t* chosen) {
  thread_local std::vector<uint32_t> narrowed, histogram;
  // four histograms, summed after: neighbouring values often share a bucket, and one counter's
  // increments would wait on each other
  histogram.assign(4 * 2048, 0);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (size_t lane = 0; lane < 4; lane++) histogram[lane * 2048 + (magnitudeBits(v[i + lane]) >> 20)]++;
  }
  for (; i < n; i++) histogram[magnitudeBits(v[i]) >> 20]++;
  for (size_t b = 0; b < 2048; b++) histogram[b] += histogram[2048 + b] + histogram[4096 + b] + histogram[6144 + b];
  // from the top bucket down until k are covered; `need` of the k lie in the bucket found
  size_t need = k;
  uint32_t prefix = 2047;
  while (histogram[prefix] < need) need -= histogram[prefix--];
  narrowed.clear();
  const size_t matching = histogram[prefix];
  narrowed.resize(matching + 1);  // one slot more: every value is written at the next free slot
  for (size_t i = 0, kept = 0; i < n; i++) {
    const uint32_t bits = magnitudeBits(v[i]);
    narrowed[kept] = bits;
    kept += (bits >> 20) == prefix;  // written always, kept when it matches: no branch to mispredict
  }
  narrowed.resize(matching);
  for (int shift : {9, 0}) {
    const uint32_t width = shift == 9 ? 2048 : 512;
    histogram.assign(width, 0);
    for (uint32_t bits : narrowed) histogram[(bits >> shift) & (width - 1)]++;
    uint32_t digit = width - 1;
    while (histogram[digit] < need) need -= histogram[digit--];
    prefix = (prefix << (shift == 9 ? 11 : 9)) | digit;
    size_t kept = 0;
    for (uint32_t bits : narrowed) if (((bits >> shift) & (width - 1)) == digit) narrowed[kept++] = bits;
    narrowed.resize(kept);
  }
  const uint32_t kth = prefix;  // all 31 bits: the k-th largest magnitude; `need` of its ties are taken, the first by index
  size_t written = 0, ties = need;
  for (size_t i = 0; i < n && written < k; i++) {
    const uint32_t bits = magnitudeBits(v[i]);
    // branch-free: a quarter of the values may be taken, in no pattern a predictor could learn
    const size_t tie = (bits == kth) & (ties > 0);
    chosen[written] = static_cast<uint32_t>(i);
    written += (bits > kth) | tie;
    ties -= tie;
  }
  return written;
}

// topkIndices(values, k, chosen) → k
Napi::Value TopkIndices(const Napi::CallbackInfo& info) {
  auto array = info[0].As<Napi::TypedArrayOf<float>>();
  const float* v = array.Data();
  const size_t n = array.ElementLength();
  const size_t k = static_cast<size_t>(integer(info, 1));
  uint32_t* chosen = info[2].As<Napi::TypedArrayOf<uint32_t>>().Data();
  if (64 * k > n) return Napi::Number::New(info.Env(), static_cast<double>(topkByRadix(v, n, k, chosen)));
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
