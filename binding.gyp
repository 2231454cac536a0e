{
  "targets": [
    {
      "target_name": "converge_native",
      "sources": ["native/converge.cc", "native/batch-norm.cc", "native/aead.cc", "native/topk.cc", "native/codecs.cc", "native/gradient-codecs.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "/usr/include/x86_64-linux-gnu/openblas-pthread", "/usr/include/openblas"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3", "-march=x86-64-v2", "-std=c++17", "-fno-exceptions"],
      "libraries": ["-lopenblas"]
    }
  ]
}
