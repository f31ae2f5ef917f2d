// File I/O on POSIX file descriptors, shared by the log store, the key files,
// the state tree's page reader and the evidence store (docs/architecture.md
// "Layers"). Every error is an Error naming the file, the operation and the
// OS's reason: "cannot write /d/head.tmp: No space left on device".
//
// Writes ask fault_injection::write_fails() first (tests only: a full disk,
// docs/operations.md "Local faults"), so an injected fault fires at every write
// of every user of this file, at the same point a real ENOSPC would.
//
// Durability: durable_replace() writes a temporary file next to the target,
// fsyncs it, renames it over the target and fsyncs the directory, so after a
// crash the target holds either the old or the new bytes, and once it returns
// the new bytes survive a power cut. On failure the temporary file is removed
// and the target keeps its old content.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <utility>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite::file_io {

// Owns a file descriptor; move-only, closed on destruction. A borrowed one
// (open_kept) is never closed by it.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  // `holder` (may be null) is kept for as long as this Fd borrows the descriptor.
  static Fd borrowed(int fd, std::shared_ptr<const void> holder = nullptr) {
    Fd f(fd);
    f.owned_ = false;
    f.holder_ = std::move(holder);
    return f;
  }
  Fd(Fd&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), owned_(o.owned_), holder_(std::move(o.holder_)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      owned_ = o.owned_;
      holder_ = std::move(o.holder_);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  bool owned() const { return owned_; }
  // Gives the descriptor up without closing it.
  int release() { return std::exchange(fd_, -1); }
  // Closes, ignoring errors (use close() where a deferred write error matters).
  // A borrowed descriptor is only forgotten.
  void reset();
  // Closes now and reports close's error (it can report a deferred write error).
  Status close(const std::filesystem::path& file);

 private:
  int fd_ = -1;
  bool owned_ = true;
  std::shared_ptr<const void> holder_;  // a borrowed descriptor's (open_kept)
};

// ::open with O_CLOEXEC. Errors: not_found when the file (or a directory on its
// path) does not exist, else io_error; both name the path and errno's text.
Result<Fd> open(const std::filesystem::path& path, int flags, mode_t mode = 0644);

// A read-only descriptor of `path` that this process keeps open: a borrowed Fd,
// the same one for every call on the same file (device and inode). For files
// SQLite locks while this process may have them open through SQLite: a
// database's main file and its -shm file. POSIX drops every fcntl lock a
// process holds on a file when the process closes *any* descriptor of it, so
// an open + read + close of our own would silently drop SQLite's locks, and
// another process's SQLite would then treat the file as unused (checkpoint and
// delete a live -wal file, reset a live -shm) (docs/vfs.md "Descriptors of
// files SQLite locks"). A kept descriptor is closed only once its file has no
// name left (unlinked or renamed over) and no Fd borrows it any more, when a
// later call opens another. Errors: as open().
Result<Fd> open_kept(const std::filesystem::path& path);
// How many descriptors open_kept holds (tests).
size_t kept_descriptors();

// Writes all of `data` at the file position (write) or at `offset` (pwrite),
// retrying on EINTR and short writes. io_error naming `path` on failure.
Status write_all(int fd, ByteView data, const std::filesystem::path& path);
Status pwrite_all(int fd, ByteView data, uint64_t offset, const std::filesystem::path& path);
// The parts one after another at `offset`, as one pwrite_all of their
// concatenation would write them, without copying them together (pwritev, up
// to 64 parts a call; empty parts are skipped).
Status pwritev_all(int fd, std::span<const ByteView> parts, uint64_t offset,
                   const std::filesystem::path& path);

// Reads until `out` is full or the file ends; returns the bytes read.
Result<size_t> read_up_to(int fd, std::span<uint8_t> out, const std::filesystem::path& path);
Result<size_t> pread_up_to(int fd, std::span<uint8_t> out, uint64_t offset,
                           const std::filesystem::path& path);
// Reads exactly out.size() bytes at `offset`; corrupt when the file ends first.
Status pread_exact(int fd, std::span<uint8_t> out, uint64_t offset,
                   const std::filesystem::path& path);

Result<uint64_t> file_size(int fd, const std::filesystem::path& path);
Status truncate(int fd, uint64_t size, const std::filesystem::path& path);

// fsync / fdatasync of an open file.
Status fsync_file(int fd, const std::filesystem::path& path);
Status fdatasync_file(int fd, const std::filesystem::path& path);
// Starts the device write of the file's dirty pages in [offset, offset + len)
// (sync_file_range SYNC_FILE_RANGE_WRITE) and returns without waiting: a
// later fdatasync then has less to wait for. Durability still needs that
// fdatasync, which reports any error of the write; this one ignores errors.
void start_writeback(int fd, uint64_t offset, uint64_t len);
// fsync of a directory, making the creation, rename or removal of its entries durable.
Status fsync_dir(const std::filesystem::path& dir);
// fsync of the directory holding `path` ("." for a bare file name).
Status fsync_parent(const std::filesystem::path& path);

// The whole file, refusing (too_large, before reading it) one over `max_bytes`:
// for files a hostile or damaged disk may have made huge. not_found if absent.
Result<Bytes> read_file(const std::filesystem::path& path, uint64_t max_bytes);

// The temporary file atomic_replace() writes: `path` + ".tmp", in the same directory.
std::filesystem::path temp_path_for(const std::filesystem::path& path);

// Replaces `path` with `data`: writes temp_path_for(path) (mode `mode`), then,
// if `durable`, fsyncs it; renames it over `path`; if `durable`, fsyncs the
// directory. Without `durable` a crash may leave an empty or old file. On any
// failure the temporary file is removed and `path` is untouched.
Status atomic_replace(const std::filesystem::path& path, ByteView data, bool durable,
                      mode_t mode = 0644);
// atomic_replace(path, data, /*durable=*/true).
Status durable_replace(const std::filesystem::path& path, ByteView data, mode_t mode = 0644);

}  // namespace swarmlite::file_io
