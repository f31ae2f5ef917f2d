// Ed25519 keys and key files (docs/formats/keys.md).
//
// Secret key bytes only ever live in SecretKey (wiped on destruction) and in
// fixed stack buffers that are wiped with sodium_memzero before returning; they
// never pass through std::string, whose old buffers cannot be wiped.
#include "core/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace swarmlite {

namespace fs = std::filesystem;

static_assert(crypto_sign_PUBLICKEYBYTES == 32);
static_assert(crypto_sign_SECRETKEYBYTES == 64);
static_assert(crypto_sign_BYTES == 64);

namespace {

// sodium_init() is itself thread-safe and idempotent; the static makes the
// check run once. Failure means no usable RNG: nothing safe can continue.
void ensure_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();
}

std::string errno_text(int err) { return std::strerror(err); }

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Owns a file descriptor; closes it on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error (close can report a deferred write error).
  Status close(const fs::path& file) {
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      return make_error(Errc::io_error, "closing {} failed: {}", file.string(), errno_text(errno));
    }
    return {};
  }

 private:
  int fd_;
};

Status write_all(int fd, const char* data, size_t n, const fs::path& file) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io_error, "writing {} failed: {}", file.string(), errno_text(errno));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

Status fsync_fd(int fd, const fs::path& file) {
  if (::fsync(fd) != 0) {
    return make_error(Errc::io_error, "fsync of {} failed: {}", file.string(), errno_text(errno));
  }
  return {};
}

Status fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) {
    return make_error(Errc::io_error, "opening directory {} to fsync it failed: {}", dir.string(),
                      errno_text(errno));
  }
  SWL_TRY(fsync_fd(fd.get(), dir));
  return fd.close(dir);
}

// Reads at most `cap` bytes into `buf`; sets `too_long` if the file has more.
Result<size_t> read_capped(int fd, char* buf, size_t cap, bool* too_long, const fs::path& file) {
  size_t got = 0;
  *too_long = false;
  for (;;) {
    char extra;
    char* dst = got < cap ? buf + got : &extra;
    size_t want = got < cap ? cap - got : 1;
    ssize_t r = ::read(fd, dst, want);
    if (r < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io_error, "reading {} failed: {}", file.string(), errno_text(errno));
    }
    if (r == 0) return got;
    if (got >= cap) {
      *too_long = true;
      return got;
    }
    got += static_cast<size_t>(r);
  }
}

}  // namespace

Result<PublicKey> PublicKey::from_hex(std::string_view hex) {
  if (hex.size() != 64) {
    return make_error(Errc::bad_value, "a public key is 64 hex digits, got {} character(s)",
                      hex.size());
  }
  SWL_ASSIGN(Hash32 h, hash_from_hex(hex));
  PublicKey key;
  key.bytes = h;
  return key;
}

SecretKey::~SecretKey() { sodium_memzero(bytes_.data(), bytes_.size()); }

PublicKey SecretKey::public_key() const {
  PublicKey pub;
  std::memcpy(pub.bytes.data(), bytes_.data() + 32, 32);
  return pub;
}

KeyPair KeyPair::generate() {
  ensure_sodium();
  std::array<uint8_t, 64> sk;
  KeyPair kp;
  crypto_sign_keypair(kp.pub.bytes.data(), sk.data());
  kp.secret = SecretKey(sk);
  sodium_memzero(sk.data(), sk.size());
  return kp;
}

Signature sign(const SecretKey& key, ByteView message) {
  ensure_sodium();
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), key.bytes().data());
  return sig;
}

bool verify_signature(const PublicKey& key, ByteView message, const Signature& sig) {
  ensure_sodium();
  return crypto_sign_verify_detached(sig.data(), message.data(), message.size(),
                                     key.bytes.data()) == 0;
}

Status write_key_files(const fs::path& dir, const KeyPair& keys) {
  ensure_sodium();
  if (keys.secret.public_key() != keys.pub) {
    return make_error(Errc::invalid_argument,
                      "key pair is inconsistent: public key {} is not the secret key's",
                      keys.pub.hex());
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return make_error(Errc::io_error, "cannot create key directory {}: {}", dir.string(),
                      ec.message());
  }

  const fs::path secret_file = dir / kSecretKeyFile;
  Fd fd(::open(secret_file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) {
    int err = errno;
    if (err == EEXIST) {
      return make_error(Errc::refused,
                        "refusing to overwrite the existing secret key {}: move it away first "
                        "if you really mean to replace the primary's identity",
                        secret_file.string());
    }
    return make_error(Errc::io_error, "cannot create secret key file {}: {}",
                      secret_file.string(), errno_text(err));
  }
  // 128 hex digits + '\n' + the NUL sodium_bin2hex writes.
  char text[2 * 64 + 2];
  sodium_bin2hex(text, sizeof text - 1, keys.secret.bytes().data(), 64);
  text[128] = '\n';
  Status written = write_all(fd.get(), text, 129, secret_file);
  sodium_memzero(text, sizeof text);
  SWL_TRY(written);
  SWL_TRY(fsync_fd(fd.get(), secret_file));
  SWL_TRY(fd.close(secret_file));

  // The public key is not secret: replace whatever is there.
  const fs::path pub_file = dir / kPublicKeyFile;
  Fd pfd(::open(pub_file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
  if (pfd.get() < 0) {
    return make_error(Errc::io_error, "cannot create public key file {}: {}", pub_file.string(),
                      errno_text(errno));
  }
  std::string pub_text = keys.pub.hex() + "\n";
  SWL_TRY(write_all(pfd.get(), pub_text.data(), pub_text.size(), pub_file));
  SWL_TRY(fsync_fd(pfd.get(), pub_file));
  SWL_TRY(pfd.close(pub_file));
  return fsync_dir(dir);
}

Result<SecretKey> load_secret_key(const fs::path& file) {
  ensure_sodium();
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    return make_error(err == ENOENT ? Errc::not_found : Errc::io_error,
                      "cannot open secret key {}: {}", file.string(), errno_text(err));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return make_error(Errc::io_error, "cannot stat secret key {}: {}", file.string(),
                      errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::bad_value, "secret key {} is not a regular file", file.string());
  }
  if ((st.st_mode & 077) != 0) {
    return make_error(Errc::refused,
                      "refusing to load secret key {}: mode {:04o} lets others read it; run "
                      "chmod 600 {}",
                      file.string(), st.st_mode & 07777, file.string());
  }

  // 128 hex digits and an optional '\n'.
  char text[130];
  bool too_long = false;
  auto got = read_capped(fd.get(), text, sizeof text - 1, &too_long, file);
  if (!got.ok()) return got.take_error();
  size_t n = *got;
  const size_t digits = n > 0 && text[n - 1] == '\n' ? n - 1 : n;
  Status format;
  if (too_long || digits != 128) {
    format = make_error(Errc::bad_value,
                        "secret key {} is {} byte(s) long; expected 128 hex digits and an "
                        "optional newline",
                        file.string(), too_long ? std::string("over 129") : std::to_string(n));
  } else {
    for (size_t i = 0; i < 128; ++i) {
      if (!is_hex_digit(text[i])) {
        format = make_error(Errc::bad_value,
                            "secret key {} has a non-hex character at offset {}", file.string(),
                            i);
        break;
      }
    }
  }
  if (!format.ok()) {
    sodium_memzero(text, sizeof text);
    return format.take_error();
  }

  std::array<uint8_t, 64> sk;
  size_t bin_len = 0;
  int rc = sodium_hex2bin(sk.data(), sk.size(), text, 128, nullptr, &bin_len, nullptr);
  sodium_memzero(text, sizeof text);
  if (rc != 0 || bin_len != 64) {
    sodium_memzero(sk.data(), sk.size());
    return make_error(Errc::internal, "secret key {}: hex decoding failed after validation",
                      file.string());
  }
  SecretKey key(sk);
  sodium_memzero(sk.data(), sk.size());

  // A libsodium secret key is seed ‖ public key: re-derive the public half
  // from the seed so a damaged file cannot sign under a different identity.
  uint8_t seed[32];
  uint8_t derived_pk[32];
  uint8_t derived_sk[64];
  crypto_sign_ed25519_sk_to_seed(seed, key.bytes().data());
  crypto_sign_seed_keypair(derived_pk, derived_sk, seed);
  sodium_memzero(seed, sizeof seed);
  sodium_memzero(derived_sk, sizeof derived_sk);
  if (std::memcmp(derived_pk, key.bytes().data() + 32, 32) != 0) {
    return make_error(Errc::bad_value,
                      "secret key {} is damaged: its public half {} is not the key derived from "
                      "its seed",
                      file.string(), key.public_key().hex());
  }
  return key;
}

Result<PublicKey> load_public_key(std::string_view hex_or_path) {
  if (hex_or_path.size() == 64) {
    auto key = PublicKey::from_hex(hex_or_path);
    if (key.ok()) return key;
  }
  // Not 64 hex digits: it must name a file.
  const fs::path file(hex_or_path);
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    return make_error(err == ENOENT ? Errc::not_found : Errc::bad_value,
                      "'{}' is not a public key: it is not 64 hex digits, and opening it as a "
                      "file failed: {}",
                      hex_or_path, errno_text(err));
  }
  // Hex, a newline and generous room for surrounding whitespace.
  char text[256];
  bool too_long = false;
  auto got = read_capped(fd.get(), text, sizeof text, &too_long, file);
  if (!got.ok()) return got.take_error();
  if (too_long) {
    return make_error(Errc::bad_value,
                      "public key file {} is over {} bytes; expected 64 hex digits", file.string(),
                      sizeof text);
  }
  std::string_view content(text, *got);
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  size_t first = content.find_first_not_of(kSpace);
  content = first == std::string_view::npos ? std::string_view{} : content.substr(first);
  content = content.substr(0, content.find_last_not_of(kSpace) + 1);
  auto key = PublicKey::from_hex(content);
  if (!key.ok()) {
    return make_error(Errc::bad_value, "public key file {} does not hold 64 hex digits: {}",
                      file.string(), key.error().message);
  }
  return key;
}

}  // namespace swarmlite
