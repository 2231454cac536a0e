// converge's convolutions through oneDNN (Debian's libdnnl, the library PyTorch's CPU
// convolutions use): forward, backward data and backward weights of the same geometry as the
// im2col kernels, on OIHW float32 weights and activations either plain (NCHW) or channel-blocked
// (nChw16c / nChw8c, the layout oneDNN's direct kernels compute in: passed that way, activations
// are not reordered at all). Weights, and activations in another layout, are reordered in and out
// on every call. Primitives are built once per geometry, batch and layouts, per thread (each
// worker thread is one core: oneDNN runs on one thread).

#include "../common.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <memory>
#include <string>
#include <unordered_map>

namespace {

using namespace converge;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Geometry {
  int batch, channels, height, width, filters, kernel, pad, stride, outHeight, outWidth, inputBlock, outputBlock;
  std::string key() const {
    return std::to_string(batch) + "," + std::to_string(channels) + "," + std::to_string(height) + "," + std::to_string(width) + "," +
           std::to_string(filters) + "," + std::to_string(kernel) + "," + std::to_string(pad) + "," + std::to_string(stride) + "," +
           std::to_string(inputBlock) + "," + std::to_string(outputBlock);
  }
};

/** The format of an activation of `block` channels side by side (1: plain NCHW). */
tag blockTag(int block) {
  return block == 16 ? tag::nChw16c : block == 8 ? tag::nChw8c : tag::nchw;
}

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

Context& context() {
  thread_local Context c;
  return c;
}

/** A memory in the layout a primitive wants, and whether it differs from the user's plain one. */
struct Staged {
  memory::desc user;
  memory inner;
  bool reorder;
  Staged() = default;
  Staged(const memory::desc& user, const memory::desc& wanted, const dnnl::engine& engine)
      : user(user), inner(wanted, engine), reorder(wanted != user) {}
};

struct Plan {
  dnnl::convolution_forward::primitive_desc forward;
  dnnl::convolution_backward_data::primitive_desc backwardData;
  dnnl::convolution_backward_weights::primitive_desc backwardWeights;
  dnnl::convolution_forward forwardPrimitive;
  dnnl::convolution_backward_data backwardDataPrimitive;
  dnnl::convolution_backward_weights backwardWeightsPrimitive;
  Staged src, weights, dst;                 // forward
  Staged bwSrc, bwDiffDst, bwDiffWeights;   // backward weights
  Staged bdWeights, bdDiffDst, bdDiffSrc;   // backward data
  memory::desc bias;
  bool sharedDiffDst;  // backward data wants diff_dst in the layout backward weights already reordered it into
};

Plan& plan(const Geometry& g) {
  thread_local std::unordered_map<std::string, std::unique_ptr<Plan>> plans;
  auto& slot = plans[g.key()];
  if (slot) return *slot;
  auto& engine = context().engine;
  const memory::dims src{g.batch, g.channels, g.height, g.width}, weights{g.filters, g.channels, g.kernel, g.kernel}, bias{g.filters},
      dst{g.batch, g.filters, g.outHeight, g.outWidth}, strides{g.stride, g.stride}, left{g.pad, g.pad};
  // the right padding that gives exactly the output size im2col gives (floor division)
  const memory::dims right{(g.outHeight - 1) * g.stride + g.kernel - g.height - g.pad, (g.outWidth - 1) * g.stride + g.kernel - g.width - g.pad};
  const memory::desc anySrc(src, dt::f32, tag::any), anyWeights(weights, dt::f32, tag::any), anyDst(dst, dt::f32, tag::any);
  const memory::desc userSrc(src, dt::f32, blockTag(g.inputBlock)), userWeights(weights, dt::f32, tag::oihw), userDst(dst, dt::f32, blockTag(g.outputBlock));
  auto p = std::make_unique<Plan>();
  p->bias = memory::desc(bias, dt::f32, tag::x);
  p->forward = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, anySrc, anyWeights, p->bias, anyDst, strides, left, right), engine);
  p->backwardData = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, anySrc, anyWeights, anyDst, strides, left, right), engine, p->forward);
  p->backwardWeights = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, anySrc, anyWeights, p->bias, anyDst, strides, left, right), engine, p->forward);
  p->forwardPrimitive = dnnl::convolution_forward(p->forward);
  p->backwardDataPrimitive = dnnl::convolution_backward_data(p->backwardData);
  p->backwardWeightsPrimitive = dnnl::convolution_backward_weights(p->backwardWeights);
  p->src = Staged(userSrc, p->forward.src_desc(), engine);
  p->weights = Staged(userWeights, p->forward.weights_desc(), engine);
  p->dst = Staged(userDst, p->forward.dst_desc(), engine);
  p->bwSrc = Staged(userSrc, p->backwardWeights.src_desc(), engine);
  p->bwDiffDst = Staged(userDst, p->backwardWeights.diff_dst_desc(), engine);
  p->bwDiffWeights = Staged(userWeights, p->backwardWeights.diff_weights_desc(), engine);
  p->bdWeights = Staged(userWeights, p->backwardData.weights_desc(), engine);
  p->bdDiffDst = Staged(userDst, p->backwardData.diff_dst_desc(), engine);
  p->bdDiffSrc = Staged(userSrc, p->backwardData.diff_src_desc(), engine);
  p->sharedDiffDst = p->bwDiffDst.reorder && p->bdDiffDst.reorder && p->backwardData.diff_dst_desc() == p->backwardWeights.diff_dst_desc();
  slot = std::move(p);
  return *slot;
}

Geometry geometry(const Napi::CallbackInfo& info, int batch, size_t at) {
  return {batch, integer(info, at), integer(info, at + 1), integer(info, at + 2), integer(info, at + 3), integer(info, at + 4),
          integer(info, at + 5), integer(info, at + 6), integer(info, at + 7), integer(info, at + 8), integer(info, at + 9), integer(info, at + 10)};
}

/** The staged memory holding `data` (reordered in when the layouts differ). */
memory into(Staged& s, float* data) {
  auto& c = context();
  memory user(s.user, c.engine, data);
  if (!s.reorder) return user;
  dnnl::reorder(user, s.inner).execute(c.stream, user, s.inner);
  return s.inner;
}

/** Where a primitive writes, for `data`: the user's buffer, or the staged one (then copied out by `out`). */
memory target(Staged& s, float* data) {
  return s.reorder ? s.inner : memory(s.user, context().engine, data);
}

void out(Staged& s, float* data) {
  if (!s.reorder) return;
  auto& c = context();
  memory user(s.user, c.engine, data);
  dnnl::reorder(s.inner, user).execute(c.stream, s.inner, user);
}

void oneThread() {
  thread_local bool set = false;
  if (!set) {
    omp_set_num_threads(1);
    set = true;
  }
}

// convForward(x, w, bias, out, batch, columns, channels, height, width, filters, kernel, pad, stride, outHeight, outWidth)
Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  oneThread();
  FlushDenormals flush;
  Plan& p = plan(geometry(info, integer(info, 4), 6));  // argument 5 is the im2col scratch, unused here
  auto& c = context();
  memory src = into(p.src, floats(info, 0)), weights = into(p.weights, floats(info, 1));
  memory bias(p.bias, c.engine, floats(info, 2)), dst = target(p.dst, floats(info, 3));
  p.forwardPrimitive.execute(c.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
  out(p.dst, floats(info, 3));
  c.stream.wait();
  return info.Env().Undefined();
}

// convBackward(x, w, gradOut, gradW, gradBias, gradX | null, batch, columns, channels, …)
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  oneThread();
  FlushDenormals flush;
  Plan& p = plan(geometry(info, integer(info, 6), 8));  // argument 7 is the im2col scratch, unused here
  auto& c = context();
  float* gradOut = floats(info, 2);
  memory src = into(p.bwSrc, floats(info, 0)), diffDst = into(p.bwDiffDst, gradOut);
  memory diffWeights = target(p.bwDiffWeights, floats(info, 3)), diffBias(p.bias, c.engine, floats(info, 4));
  p.backwardWeightsPrimitive.execute(c.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diffDst}, {DNNL_ARG_DIFF_WEIGHTS, diffWeights}, {DNNL_ARG_DIFF_BIAS, diffBias}});
  out(p.bwDiffWeights, floats(info, 3));
  if (!info[5].IsNull()) {
    memory weights = into(p.bdWeights, floats(info, 1)), diffSrc = target(p.bdDiffSrc, floats(info, 5));
    memory dataDiffDst = p.sharedDiffDst ? diffDst : into(p.bdDiffDst, gradOut);
    p.backwardDataPrimitive.execute(c.stream, {{DNNL_ARG_DIFF_DST, dataDiffDst}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DIFF_SRC, diffSrc}});
    out(p.bdDiffSrc, floats(info, 5));
  }
  c.stream.wait();
  return info.Env().Undefined();
}

// reorderChannels(source, target, batch, channels, plane, fromBlock, toBlock): oneDNN's reorder
Napi::Value ReorderChannels(const Napi::CallbackInfo& info) {
  oneThread();
  const int batch = integer(info, 2), channels = integer(info, 3), plane = integer(info, 4), from = integer(info, 5), to = integer(info, 6);
  auto& c = context();
  thread_local std::unordered_map<std::string, std::unique_ptr<dnnl::reorder>> reorders;
  const std::string key = std::to_string(batch) + "," + std::to_string(channels) + "," + std::to_string(plane) + "," + std::to_string(from) + "," + std::to_string(to);
  const memory::dims dims{batch, channels, plane, 1};
  const memory::desc source(dims, dt::f32, blockTag(from)), target(dims, dt::f32, blockTag(to));
  auto& slot = reorders[key];
  if (!slot) slot = std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(c.engine, source, c.engine, target));
  memory in(source, c.engine, floats(info, 0)), out(target, c.engine, floats(info, 1));
  slot->execute(c.stream, in, out);
  c.stream.wait();
  return info.Env().Undefined();
}

/**
 * The channel block oneDNN's forward convolution asks for on this CPU (16 with AVX-512, 8 with
 * AVX2), asked of a typical 3×3 convolution of 16 channels; 1 when it wants no block of ours.
 */
Napi::Value ChannelBlock(const Napi::CallbackInfo& info) {
  oneThread();
  auto& engine = context().engine;
  const memory::dims src{64, 16, 16, 16}, weights{16, 16, 3, 3}, dst{64, 16, 16, 16}, strides{1, 1}, pad{1, 1};
  const memory::desc any(src, dt::f32, tag::any), anyWeights(weights, dt::f32, tag::any), anyDst(dst, dt::f32, tag::any);
  const dnnl::convolution_forward::primitive_desc forward(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, any, anyWeights, anyDst, strides, pad, pad), engine);
  int block = 1;
  for (int candidate : {16, 8})
    if (forward.dst_desc() == memory::desc(dst, dt::f32, blockTag(candidate))) block = candidate;
  return Napi::Number::New(info.Env(), block);
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  const dnnl_version_t* v = dnnl_version();
  return Napi::String::New(info.Env(), "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("convForward", Napi::Function::New(env, ConvForward, "convForward"));
  exports.Set("convBackward", Napi::Function::New(env, ConvBackward, "convBackward"));
  exports.Set("reorderChannels", Napi::Function::New(env, ReorderChannels, "reorderChannels"));
  exports.Set("channelBlock", Napi::Function::New(env, ChannelBlock, "channelBlock"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  return exports;
}

}  // namespace

NODE_API_MODULE(converge_dnnl, Init)
