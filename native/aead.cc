// AES-256-GCM for the tcp backend's sealed records (src/comm/tcp-seal.ts), through the OpenSSL
// that Node itself carries (node-gyp puts its headers first; its symbols resolve from the node
// binary, so nothing is linked). The reference kernels call the same cipher through node:crypto;
// this path differs only in memory: it writes into the caller's buffers (Node allocates a fresh
// output buffer per call, and fresh pages cost ≈12 µs per 4 KiB here) and keeps one context per
// thread, so the key schedule is all a record pays for besides the cipher itself.
#include "common.h"

#include <openssl/evp.h>

namespace converge {
namespace {

struct Buffer {
  uint8_t* data;
  size_t length;
};

Buffer bytes(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNull()) return {nullptr, 0};
  auto array = info[i].As<Napi::Uint8Array>();
  return {array.Data(), array.ByteLength()};
}

EVP_CIPHER_CTX* context() {
  thread_local struct Owner {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    ~Owner() { EVP_CIPHER_CTX_free(ctx); }
  } owner;
  return owner.ctx;
}

// One record through AES-256-GCM: aeadSeal(key, nonce, aad, src, dst | null, tag) writes the tag;
// aeadOpen(…) checks it and says whether it authenticates. With dst null, src is additional data.
bool Record(const Napi::CallbackInfo& info, int seal) {
  const Buffer key = bytes(info, 0), nonce = bytes(info, 1), aad = bytes(info, 2), src = bytes(info, 3), dst = bytes(info, 4), tag = bytes(info, 5);
  EVP_CIPHER_CTX* ctx = context();
  int n = 0;
  uint8_t end[16];
  return EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data, nonce.data, seal) == 1 &&
         EVP_CipherUpdate(ctx, nullptr, &n, aad.data, static_cast<int>(aad.length)) == 1 &&
         EVP_CipherUpdate(ctx, dst.data, &n, src.data, static_cast<int>(src.length)) == 1 &&
         (seal || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag.data) == 1) &&
         EVP_CipherFinal_ex(ctx, end, &n) == 1 &&
         (!seal || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data) == 1);
}

Napi::Value AeadSeal(const Napi::CallbackInfo& info) {
  if (!Record(info, 1)) Napi::Error::New(info.Env(), "aeadSeal: OpenSSL failed").ThrowAsJavaScriptException();
  return info.Env().Undefined();
}

Napi::Value AeadOpen(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Record(info, 0));
}

}  // namespace

void addAead(Napi::Env env, Napi::Object exports) {
  exports.Set("aeadSeal", Napi::Function::New(env, AeadSeal, "aeadSeal"));
  exports.Set("aeadOpen", Napi::Function::New(env, AeadOpen, "aeadOpen"));
}

}  // namespace converge
