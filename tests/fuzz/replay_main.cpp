// Without libFuzzer: runs a fuzz target over every file in the directories
// (or files) given on the command line, so each corpus is a regular test.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  size_t runs = 0;
  auto run_file = [&](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    ++runs;
  };
  for (int i = 1; i < argc; ++i) {
    fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) run_file(e.path());
      }
    } else if (fs::exists(p)) {
      run_file(p);
    }
  }
  // Always also run the empty input.
  LLVMFuzzerTestOneInput(nullptr, 0);
  std::printf("replayed %zu input(s)\n", runs + 1);
  return 0;
}
