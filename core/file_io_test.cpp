#include "core/file_io.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/fault_injection.h"
#include "core/proc_locks_test_util.h"
#include "core/temp_dir_test_util.h"

using namespace swarmlite;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

size_t entries_in(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

struct ClearFaults {
  ~ClearFaults() { fault_injection::clear(); }
};

}  // namespace

TEST_CASE("file_io: durable_replace writes the new bytes and leaves no temporary file") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  const fs::path f = d.path / "state";
  REQUIRE(file_io::durable_replace(f, as_bytes("first")).ok());
  CHECK(slurp(f) == "first");
  REQUIRE(file_io::durable_replace(f, as_bytes("second, longer")).ok());
  CHECK(slurp(f) == "second, longer");
  REQUIRE(file_io::durable_replace(f, as_bytes("3")).ok());
  CHECK(slurp(f) == "3");
  CHECK(entries_in(d.path) == 1);
  CHECK((fs::status(f).permissions() & fs::perms::others_write) == fs::perms::none);
}

TEST_CASE("file_io: a failed durable_replace keeps the old content and removes its temporary file") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  const fs::path f = d.path / "evidence.bin";
  REQUIRE(file_io::durable_replace(f, as_bytes("old")).ok());
  ClearFaults guard;
  fault_injection::fail_writes_under(d.path);  // the disk is full
  auto st = file_io::durable_replace(f, as_bytes("new bytes"));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::io_error);
  // The error names the file it could not write and why.
  CHECK(st.error().message.find(file_io::temp_path_for(f).string()) != std::string::npos);
  CHECK(st.error().message.find("No space left on device") != std::string::npos);
  CHECK(slurp(f) == "old");
  CHECK_FALSE(fs::exists(file_io::temp_path_for(f)));
  CHECK(entries_in(d.path) == 1);
  fault_injection::clear();
  REQUIRE(file_io::durable_replace(f, as_bytes("new bytes")).ok());
  CHECK(slurp(f) == "new bytes");
}

TEST_CASE("file_io: a durable_replace whose rename fails removes its temporary file") {
  TempDir d("fileio");
  fs::create_directories(d.path / "target_is_a_dir" / "child");  // rename onto a non-empty dir fails
  const fs::path f = d.path / "target_is_a_dir";
  auto st = file_io::durable_replace(f, as_bytes("x"));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find(f.string()) != std::string::npos);
  CHECK_FALSE(fs::exists(file_io::temp_path_for(f)));
  CHECK(fs::is_directory(f / "child"));
}

TEST_CASE("file_io: durable_replace into a directory that cannot exist names the path") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  put(d.path / "plain", "a file, not a directory");
  const fs::path f = d.path / "plain" / "evidence.bin";
  auto st = file_io::durable_replace(f, as_bytes("x"));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::io_error);
  CHECK(st.error().message.find(file_io::temp_path_for(f).string()) != std::string::npos);
  CHECK(st.error().message.find("Not a directory") != std::string::npos);
}

TEST_CASE("file_io: read_file returns the bytes, refuses a file over the cap and names missing files") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  const fs::path f = d.path / "f";
  put(f, std::string(100, 'a'));
  auto all = file_io::read_file(f, 100);
  REQUIRE(all.ok());
  CHECK(all->size() == 100);
  auto over = file_io::read_file(f, 99);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == Errc::too_large);
  CHECK(over.error().message.find(f.string()) != std::string::npos);
  auto empty_file = d.path / "empty";
  put(empty_file, "");
  auto e = file_io::read_file(empty_file, 10);
  REQUIRE(e.ok());
  CHECK(e->empty());
  auto missing = file_io::read_file(d.path / "missing", 10);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(missing.error().message.find((d.path / "missing").string()) != std::string::npos);
  // A file whose size says 0 but which has bytes (procfs): the cap still holds.
  auto proc = file_io::read_file("/proc/self/status", 16);
  REQUIRE_FALSE(proc.ok());
  CHECK(proc.error().code == Errc::too_large);
  CHECK(file_io::read_file("/proc/self/status", 1 << 20).ok());
}

TEST_CASE("file_io: Fd is move-only and closes once; open errors name the path") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  auto opened = file_io::open(d.path / "f", O_RDWR | O_CREAT);
  REQUIRE(opened.ok());
  file_io::Fd a = std::move(opened).value();
  const int raw = a.get();
  CHECK(raw >= 0);
  file_io::Fd b = std::move(a);
  CHECK_FALSE(a.valid());
  CHECK(b.get() == raw);
  CHECK(::fcntl(raw, F_GETFD) >= 0);
  CHECK((::fcntl(raw, F_GETFD) & FD_CLOEXEC) != 0);
  REQUIRE(b.close(d.path / "f").ok());
  CHECK_FALSE(b.valid());
  CHECK(::fcntl(raw, F_GETFD) < 0);  // closed

  auto bad = file_io::open(d.path / "no" / "such", O_RDONLY);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::not_found);
  CHECK(bad.error().message == fmt::format("cannot open {}: No such file or directory",
                                           (d.path / "no" / "such").string()));
}

TEST_CASE("file_io: pwrite_all / pread_exact / pread_up_to, and injected write faults") {
  TempDir d("fileio");
  fs::create_directories(d.path);
  const fs::path f = d.path / "data";
  auto opened = file_io::open(f, O_RDWR | O_CREAT);
  REQUIRE(opened.ok());
  file_io::Fd fd = std::move(opened).value();
  Bytes big(1 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  REQUIRE(file_io::pwrite_all(fd.get(), big, 10, f).ok());
  CHECK(*file_io::file_size(fd.get(), f) == big.size() + 10);
  Bytes back(big.size());
  REQUIRE(file_io::pread_exact(fd.get(), back, 10, f).ok());
  CHECK(back == big);
  Bytes past(20);
  auto st = file_io::pread_exact(fd.get(), past, big.size(), f);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::corrupt);
  CHECK(st.error().message.find(f.string()) != std::string::npos);
  auto n = file_io::pread_up_to(fd.get(), past, big.size(), f);
  REQUIRE(n.ok());
  CHECK(*n == 10);
  REQUIRE(file_io::truncate(fd.get(), 5, f).ok());
  CHECK(*file_io::file_size(fd.get(), f) == 5);
  REQUIRE(file_io::fdatasync_file(fd.get(), f).ok());
  REQUIRE(file_io::fsync_file(fd.get(), f).ok());
  REQUIRE(file_io::fsync_dir(d.path).ok());
  REQUIRE(file_io::fsync_parent(f).ok());

  // pwritev_all: 300 parts (more than one pwritev takes), some empty, give the
  // bytes of their concatenation at the offset.
  Bytes joined;
  std::vector<Bytes> pieces;
  for (size_t i = 0; i < 300; ++i) {
    Bytes piece(i % 7 == 0 ? 0 : (i * 37) % 301 + 1);
    for (size_t k = 0; k < piece.size(); ++k) piece[k] = static_cast<uint8_t>(i * 13 + k);
    joined.insert(joined.end(), piece.begin(), piece.end());
    pieces.push_back(std::move(piece));
  }
  std::vector<ByteView> views(pieces.begin(), pieces.end());
  REQUIRE(file_io::pwritev_all(fd.get(), views, 3, f).ok());
  CHECK(*file_io::file_size(fd.get(), f) == joined.size() + 3);
  Bytes joined_back(joined.size());
  REQUIRE(file_io::pread_exact(fd.get(), joined_back, 3, f).ok());
  CHECK(joined_back == joined);
  REQUIRE(file_io::pwritev_all(fd.get(), std::span<const ByteView>(), 0, f).ok());
  REQUIRE(file_io::truncate(fd.get(), 5, f).ok());

  ClearFaults guard;
  fault_injection::fail_writes_under(f);
  CHECK_FALSE(file_io::pwritev_all(fd.get(), views, 0, f).ok());
  auto w = file_io::pwrite_all(fd.get(), as_bytes("x"), 0, f);
  REQUIRE_FALSE(w.ok());
  CHECK(w.error().message == fmt::format("cannot write {}: No space left on device", f.string()));
  CHECK_FALSE(file_io::write_all(fd.get(), as_bytes("x"), f).ok());
  CHECK(*file_io::file_size(fd.get(), f) == 5);  // nothing written

  auto dir_err = file_io::fsync_dir(d.path / "missing");
  REQUIRE_FALSE(dir_err.ok());
  CHECK(dir_err.error().message.find((d.path / "missing").string()) != std::string::npos);
}

TEST_CASE(
    "open_kept: one descriptor per file, kept open, so a lock held through another survives") {
  TempDir dir("kept");
  fs::create_directories(dir.path);
  const fs::path f = dir.path / "db";
  put(f, "0123456789");
  auto locker = file_io::open(f, O_RDWR);
  REQUIRE(locker.ok());
  struct flock lk {};
  lk.l_type = F_RDLCK;
  lk.l_whence = SEEK_SET;
  lk.l_start = 4;
  lk.l_len = 1;
  REQUIRE(::fcntl(locker->get(), F_SETLK, &lk) == 0);
  REQUIRE(posix_locks_held(f) == 1);

  int first = -1;
  {
    auto kept = file_io::open_kept(f);
    REQUIRE(kept.ok());
    CHECK_FALSE(kept->owned());
    first = kept->get();
    uint8_t b[3];
    auto got = file_io::pread_up_to(kept->get(), b, 2, f);
    REQUIRE(got.ok());
    CHECK(*got == 3);
    CHECK(b[0] == '2');
  }  // the borrowed descriptor is not closed here
  CHECK(posix_locks_held(f) == 1);
  {
    auto again = file_io::open_kept(f);
    REQUIRE(again.ok());
    CHECK(again->get() == first);
    file_io::Fd moved = std::move(*again);
    CHECK(moved.close(f).ok());  // forgets it, does not close it
  }
  CHECK(posix_locks_held(f) == 1);
  CHECK(::fcntl(first, F_GETFD) != -1);

  // What open_kept avoids: closing any other descriptor of the file drops the lock.
  { auto plain = file_io::open(f, O_RDONLY); }
  CHECK(posix_locks_held(f) == 0);

  // A file without a name has its kept descriptor closed when another file's
  // is opened, once no Fd borrows it any more.
  auto reading = file_io::open_kept(f);
  REQUIRE(reading.ok());
  fs::remove(f);
  put(dir.path / "other", "x");
  REQUIRE(file_io::open_kept(dir.path / "other").ok());
  CHECK(::fcntl(first, F_GETFD) != -1);  // still borrowed
  uint8_t b2[2];
  auto still = file_io::pread_up_to(reading->get(), b2, 0, f);
  REQUIRE(still.ok());
  CHECK(*still == 2);
  reading->reset();
  const size_t before = file_io::kept_descriptors();
  put(dir.path / "another", "z");
  auto another = file_io::open_kept(dir.path / "another");
  REQUIRE(another.ok());
  CHECK(file_io::kept_descriptors() <= before);  // f's closed, another's opened
  CHECK(::fcntl(first, F_GETFD) == -1);
  CHECK(file_io::open_kept(dir.path / "missing").error().code == Errc::not_found);
  fs::remove(dir.path / "other");
  fs::remove(dir.path / "another");
  put(dir.path / "third", "y");
  CHECK(file_io::open_kept(dir.path / "third").ok());
}
