#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/fault_injection.h"

namespace swarmlite::file_io {

namespace fs = std::filesystem;

namespace {

Error os_error(std::string_view what, const fs::path& file, int err) {
  return make_error(Errc::io_error, "{} {}: {}", what, file.string(), std::strerror(err));
}

// Tests only: a write to `path` fails as if the disk were full.
Status injected_write_fault(const fs::path& path) {
  if (fault_injection::write_fails(path.c_str())) {
    return os_error("cannot write", path, ENOSPC);
  }
  return {};
}

}  // namespace

void Fd::reset() {
  if (fd_ >= 0 && owned_) ::close(fd_);
  fd_ = -1;
  holder_.reset();
}

Status Fd::close(const fs::path& file) {
  int fd = std::exchange(fd_, -1);
  holder_.reset();
  if (fd >= 0 && owned_ && ::close(fd) != 0) return os_error("cannot close", file, errno);
  return {};
}

namespace {
struct KeptFd {
  dev_t dev;
  ino_t ino;
  int fd;
  // Copied into every Fd that borrows fd: the descriptor is closed only when
  // this is the last copy.
  std::shared_ptr<const void> holder;
};
struct KeptFds {
  std::mutex mu;
  std::vector<KeptFd> fds;
};
KeptFds& kept_fds() {
  static KeptFds* k = new KeptFds();  // never destroyed: descriptors outlive statics
  return *k;
}
}  // namespace

Result<Fd> open_kept(const fs::path& path) {
  KeptFds& k = kept_fds();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    std::lock_guard lock(k.mu);
    for (const KeptFd& e : k.fds)
      if (e.dev == st.st_dev && e.ino == st.st_ino) return Fd::borrowed(e.fd, e.holder);
  }
  SWL_ASSIGN(Fd opened, open(path, O_RDONLY));
  // From here the descriptor is never closed while its file has a name.
  const int fd = opened.get();
  struct stat fst {};
  const bool known = ::fstat(fd, &fst) == 0;
  std::lock_guard lock(k.mu);
  // Descriptors of files without a name: no other process can open those
  // files, so the locks their close drops protect nobody. Not while an Fd
  // still reads through one (a pin of a file since replaced).
  std::erase_if(k.fds, [](const KeptFd& e) {
    if (e.holder.use_count() > 1) return false;
    struct stat s {};
    if (::fstat(e.fd, &s) != 0 || s.st_nlink != 0) return false;
    ::close(e.fd);
    return true;
  });
  for (const KeptFd& e : k.fds) {
    if (known && e.dev == fst.st_dev && e.ino == fst.st_ino) {
      // Another thread kept one meanwhile: ours is kept too (closing it would
      // drop the locks), the first one is handed out.
      Fd first = Fd::borrowed(e.fd, e.holder);  // before push_back moves the entries
      k.fds.push_back({fst.st_dev, fst.st_ino, opened.release(), std::make_shared<int>(0)});
      return first;
    }
  }
  auto holder = std::make_shared<int>(0);
  k.fds.push_back(
      {known ? fst.st_dev : dev_t{}, known ? fst.st_ino : ino_t{}, opened.release(), holder});
  return Fd::borrowed(fd, std::move(holder));
}

size_t kept_descriptors() {
  KeptFds& k = kept_fds();
  std::lock_guard lock(k.mu);
  return k.fds.size();
}

Result<Fd> open(const fs::path& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    return make_error(err == ENOENT ? Errc::not_found : Errc::io_error, "cannot open {}: {}",
                      path.string(), std::strerror(err));
  }
  return Fd(fd);
}

Status write_all(int fd, ByteView data, const fs::path& path) {
  SWL_TRY(injected_write_fault(path));
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot write", path, errno);
    if (n == 0) return os_error("cannot write", path, EIO);  // no progress: do not spin
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Status pwrite_all(int fd, ByteView data, uint64_t offset, const fs::path& path) {
  SWL_TRY(injected_write_fault(path));
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot write", path, errno);
    if (n == 0) return os_error("cannot write", path, EIO);
    data = data.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Status pwritev_all(int fd, std::span<const ByteView> parts, uint64_t offset, const fs::path& path) {
  SWL_TRY(injected_write_fault(path));
  constexpr size_t kMaxIov = 64;  // well under IOV_MAX (1024 on Linux)
  size_t part = 0;                // the first part not wholly written
  size_t skip = 0;                // bytes of parts[part] already written
  for (;;) {
    while (part < parts.size() && skip == parts[part].size()) ++part, skip = 0;
    if (part == parts.size()) return {};
    iovec iov[kMaxIov];
    int count = 0;
    for (size_t i = part; i < parts.size() && count < static_cast<int>(kMaxIov); ++i) {
      const size_t from = i == part ? skip : 0;
      if (parts[i].size() == from) continue;
      iov[count].iov_base = const_cast<uint8_t*>(parts[i].data() + from);
      iov[count].iov_len = parts[i].size() - from;
      ++count;
    }
    ssize_t n = ::pwritev(fd, iov, count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot write", path, errno);
    if (n == 0) return os_error("cannot write", path, EIO);  // no progress: do not spin
    offset += static_cast<uint64_t>(n);
    for (auto left = static_cast<size_t>(n); left > 0;) {
      const size_t take = std::min(left, parts[part].size() - skip);
      skip += take;
      left -= take;
      if (skip == parts[part].size()) ++part, skip = 0;
    }
  }
}

Result<size_t> read_up_to(int fd, std::span<uint8_t> out, const fs::path& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot read", path, errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<size_t> pread_up_to(int fd, std::span<uint8_t> out, uint64_t offset, const fs::path& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return make_error(Errc::io_error, "cannot read {} byte(s) at offset {} of {}: {}",
                        out.size(), offset, path.string(), std::strerror(errno));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status pread_exact(int fd, std::span<uint8_t> out, uint64_t offset, const fs::path& path) {
  SWL_ASSIGN(size_t got, pread_up_to(fd, out, offset, path));
  if (got < out.size()) {
    return make_error(Errc::corrupt, "{}: {} byte(s) at offset {} run past the end of the file",
                      path.string(), out.size(), offset);
  }
  return {};
}

Result<uint64_t> file_size(int fd, const fs::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return os_error("cannot stat", path, errno);
  return static_cast<uint64_t>(st.st_size);
}

Status truncate(int fd, uint64_t size, const fs::path& path) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return os_error("cannot truncate", path, errno);
  return {};
}

Status fsync_file(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) return os_error("cannot fsync", path, errno);
  return {};
}

Status fdatasync_file(int fd, const fs::path& path) {
  if (fault_injection::sync_fails(path.c_str())) return os_error("cannot fsync", path, EIO);
  if (::fdatasync(fd) != 0) return os_error("cannot fsync", path, errno);
  return {};
}

void start_writeback(int fd, uint64_t offset, uint64_t len) {
  if (len == 0) return;
  (void)::sync_file_range(fd, static_cast<off64_t>(offset), static_cast<off64_t>(len),
                          SYNC_FILE_RANGE_WRITE);
}

Status fsync_dir(const fs::path& dir) {
  SWL_ASSIGN(Fd fd, open(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return os_error("cannot fsync directory", dir, errno);
  return fd.close(dir);
}

Status fsync_parent(const fs::path& path) {
  fs::path dir = path.parent_path();
  return fsync_dir(dir.empty() ? fs::path(".") : dir);
}

Result<Bytes> read_file(const fs::path& path, uint64_t max_bytes) {
  SWL_ASSIGN(Fd fd, open(path, O_RDONLY));
  SWL_ASSIGN(uint64_t size, file_size(fd.get(), path));
  auto too_large = [&](std::string_view how) {
    return make_error(Errc::too_large, "{}: {}, over the cap of {} bytes", path.string(), how,
                      max_bytes);
  };
  if (size > max_bytes) return too_large(fmt::format("{} bytes", size));
  // The size is a hint (the file may grow, or be a pipe or /proc file that says
  // 0): read up to the cap plus one byte, which tells an oversized file.
  Bytes out;
  size_t want = static_cast<size_t>(size) + 1;
  for (;;) {
    size_t at = out.size();
    out.resize(at + want);
    SWL_ASSIGN(size_t got, read_up_to(fd.get(), std::span<uint8_t>(out).subspan(at), path));
    out.resize(at + got);
    if (out.size() > max_bytes) return too_large("more bytes than that");
    if (got < want) return out;
    want = static_cast<size_t>(std::min<uint64_t>(max_bytes + 1 - out.size(), 64 * 1024));
  }
}

fs::path temp_path_for(const fs::path& path) {
  fs::path tmp = path;
  tmp += ".tmp";
  return tmp;
}

Status atomic_replace(const fs::path& path, ByteView data, bool durable, mode_t mode) {
  const fs::path tmp = temp_path_for(path);
  auto write_temp = [&]() -> Status {
    SWL_ASSIGN(Fd fd, open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    SWL_TRY(write_all(fd.get(), data, tmp));
    if (durable) SWL_TRY(fsync_file(fd.get(), tmp));
    return fd.close(tmp);
  };
  Status st = write_temp();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = make_error(Errc::io_error, "cannot rename {} to {}: {}", tmp.string(), path.string(),
                    std::strerror(errno));
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());  // may not exist (open failed): nothing to report
    return st;
  }
  // Renamed: the new bytes are in place; the directory sync makes the rename durable.
  if (durable) SWL_TRY(fsync_parent(path));
  return {};
}

Status durable_replace(const fs::path& path, ByteView data, mode_t mode) {
  return atomic_replace(path, data, /*durable=*/true, mode);
}

}  // namespace swarmlite::file_io
