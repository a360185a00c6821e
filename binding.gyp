{
  # node-gyp build of the same addon CMakeLists.txt builds with cmake-js.
  # Keep "sources" and NAPI_VERSION identical to CMakeLists.txt.
  "targets": [
    {
      "target_name": "multirank",
      "sources": [
        "native/addon.cc",
        "native/affinity.cc",
        "native/cuda_driver.cc",
        "native/cuda_kernel.cc",
        "native/devices.cc",
        "native/dynamic_library.cc",
        "native/errors.cc",
        "native/nvml.cc",
        "native/parent_death.cc",
        "native/reduce_kernel.cc",
        "native/shared_memory.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "libraries": ["-ldl"],
      "conditions": [["OS=='linux'", { "libraries": ["-lrt"] }]],
      "xcode_settings": { "CLANG_CXX_LANGUAGE_STANDARD": "c++17", "GCC_SYMBOLS_PRIVATE_EXTERN": "YES" }
    }
  ]
}
