{
  "targets": [
    {
      "target_name": "converge_mpi",
      "sources": ["converge_mpi.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(mpicc --showme:incdirs)"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "OMPI_SKIP_MPICXX=1"],
      "cflags_cc": ["-O2", "-std=c++17", "-fno-exceptions"],
      "libraries": ["<!@(mpicc --showme:link)"]
    }
  ]
}
