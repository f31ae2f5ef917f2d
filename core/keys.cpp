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

#include "core/file_io.h"

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

using file_io::Fd;

// Reads at most `cap` bytes into `buf`; sets `too_long` if the file has more.
Result<size_t> read_capped(int fd, char* buf, size_t cap, bool* too_long, const fs::path& file) {
  auto* bytes = reinterpret_cast<uint8_t*>(buf);
  SWL_ASSIGN(size_t got, file_io::read_up_to(fd, std::span<uint8_t>(bytes, cap), file));
  uint8_t extra;
  SWL_ASSIGN(size_t more, file_io::read_up_to(fd, std::span<uint8_t>(&extra, 1), file));
  *too_long = more > 0;
  return got;
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
  auto opened = file_io::open(secret_file, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0600);
  if (!opened.ok()) {
    // O_EXCL failed because something (a file, a symlink) is there already.
    if (fs::symlink_status(secret_file, ec).type() != fs::file_type::not_found && !ec) {
      return make_error(Errc::refused,
                        "refusing to overwrite the existing secret key {}: move it away first "
                        "if you really mean to replace the primary's identity",
                        secret_file.string());
    }
    return make_error(Errc::io_error, "cannot create the secret key file: {}",
                      opened.error().message);
  }
  Fd fd = std::move(opened).value();
  // 128 hex digits + '\n' + the NUL sodium_bin2hex writes.
  char text[2 * 64 + 2];
  sodium_bin2hex(text, sizeof text - 1, keys.secret.bytes().data(), 64);
  text[128] = '\n';
  Status written =
      file_io::write_all(fd.get(), ByteView(reinterpret_cast<const uint8_t*>(text), 129), secret_file);
  sodium_memzero(text, sizeof text);
  SWL_TRY(written);
  SWL_TRY(file_io::fsync_file(fd.get(), secret_file));
  SWL_TRY(fd.close(secret_file));

  // The public key is not secret: replace whatever is there (atomically, so a
  // crash never leaves an empty or half-written file). durable_replace fsyncs
  // the directory, which also makes the secret key's creation durable.
  const fs::path pub_file = dir / kPublicKeyFile;
  std::string pub_text = keys.pub.hex() + "\n";
  return file_io::durable_replace(pub_file, as_bytes(pub_text), 0644);
}

Result<SecretKey> load_secret_key(const fs::path& file) {
  ensure_sodium();
  auto opened = file_io::open(file, O_RDONLY);
  if (!opened.ok()) {
    return make_error(opened.error().code, "cannot read the secret key: {}",
                      opened.error().message);
  }
  Fd fd = std::move(opened).value();
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
  auto opened = file_io::open(file, O_RDONLY);
  if (!opened.ok()) {
    return make_error(opened.error().code == Errc::not_found ? Errc::not_found : Errc::bad_value,
                      "'{}' is not a public key: it is not 64 hex digits, and opening it as a "
                      "file failed: {}",
                      hex_or_path, opened.error().message);
  }
  Fd fd = std::move(opened).value();
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
