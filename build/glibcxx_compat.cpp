// Stand-in for std::ios_base_library_init(), the one symbol of GCC 13's libstdc++
// (version GLIBCXX_3.4.32) that TorchSharp 0.107's libLibTorchSharp.so needs.
//
// GCC 13 moved the initialisation of the standard streams into libstdc++ and has every translation
// unit that includes <iostream> reference this (empty) function, so that the program is linked to a
// libstdc++ that performs it. On an older libstdc++ (Debian 12, Ubuntu 22.04) the streams are
// initialised by std::ios_base::Init objects instead, so this library defines the function and
// holds one such object. build/LibTorchSharpCompat.targets builds it and adds it as a needed
// library of libLibTorchSharp.so only on hosts whose libstdc++ lacks GLIBCXX_3.4.32.
#include <ios>

namespace std {
__attribute__((visibility("default"))) void ios_base_library_init() {}
}

static std::ios_base::Init hierdistill_ios_init;
