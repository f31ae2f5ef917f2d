#include "sqlbridge/engine/db_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace swarmlite {

Result<int> lock_database(const std::filesystem::path& db_path) {
  std::string path = db_path.string() + "-swlock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(Errc::io_error, "open {}: {}", path, std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return make_error(Errc::unavailable, "{} is already open for writing by another primary or replica",
                        db_path.string());
    }
    return make_error(Errc::io_error, "flock {}: {}", path, std::strerror(err));
  }
  return fd;
}

void unlock_database(int fd) {
  if (fd >= 0) ::close(fd);
}

}  // namespace swarmlite
