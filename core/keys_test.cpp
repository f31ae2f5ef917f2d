#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/keys.h"

namespace swarmlite {

namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed on scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           fmt::format("swarmlite-keys-test-{}-{:08x}", ::getpid(), rd());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_text(const fs::path& p, std::string_view text, mode_t mode) {
  std::ofstream(p, std::ios::binary) << text;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("keys: written key files load back as the same pair") {
  TempDir dir;
  KeyPair kp = KeyPair::generate();
  CHECK(kp.secret.public_key() == kp.pub);
  const fs::path sub = dir.path / "new" / "keys";  // created if missing
  REQUIRE(write_key_files(sub, kp).ok());

  struct stat st;
  REQUIRE(::stat((sub / kSecretKeyFile).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(fs::file_size(sub / kSecretKeyFile) == 129);

  auto sk = load_secret_key(sub / kSecretKeyFile);
  REQUIRE(sk.ok());
  CHECK(sk->bytes() == kp.secret.bytes());
  auto pub = load_public_key((sub / kPublicKeyFile).string());
  REQUIRE(pub.ok());
  CHECK(*pub == kp.pub);
}

TEST_CASE("keys: a signature verifies only for its message and key") {
  KeyPair kp = KeyPair::generate();
  KeyPair other = KeyPair::generate();
  Bytes msg = {1, 2, 3};
  Signature sig = sign(kp.secret, msg);
  CHECK(verify_signature(kp.pub, msg, sig));
  CHECK_FALSE(verify_signature(other.pub, msg, sig));
  Bytes changed = {1, 2, 4};
  CHECK_FALSE(verify_signature(kp.pub, changed, sig));
  Signature bad = sig;
  bad[10] ^= 1;
  CHECK_FALSE(verify_signature(kp.pub, msg, bad));
}

TEST_CASE("keys: a secret key others can read is refused with a clear message") {
  TempDir dir;
  KeyPair kp = KeyPair::generate();
  REQUIRE(write_key_files(dir.path, kp).ok());
  const fs::path file = dir.path / kSecretKeyFile;
  REQUIRE(::chmod(file.c_str(), 0644) == 0);
  auto sk = load_secret_key(file);
  REQUIRE(!sk.ok());
  CHECK(sk.error().code == Errc::refused);
  CHECK(sk.error().message == fmt::format("refusing to load secret key {}: mode 0644 lets others "
                                          "read it; run chmod 600 {}",
                                          file.string(), file.string()));
  REQUIRE(::chmod(file.c_str(), 0640) == 0);
  CHECK(load_secret_key(file).error().code == Errc::refused);
  REQUIRE(::chmod(file.c_str(), 0400) == 0);
  CHECK(load_secret_key(file).ok());
}

TEST_CASE("keys: an existing secret key is never overwritten") {
  TempDir dir;
  KeyPair first = KeyPair::generate();
  KeyPair second = KeyPair::generate();
  REQUIRE(write_key_files(dir.path, first).ok());
  auto s = write_key_files(dir.path, second);
  REQUIRE(!s.ok());
  CHECK(s.error().code == Errc::refused);
  CHECK(contains(s.error().message, (dir.path / kSecretKeyFile).string()));
  auto sk = load_secret_key(dir.path / kSecretKeyFile);
  REQUIRE(sk.ok());
  CHECK(sk->bytes() == first.secret.bytes());
  CHECK(*load_public_key((dir.path / kPublicKeyFile).string()) == first.pub);
}

TEST_CASE("keys: public key from hex and from a file with whitespace") {
  TempDir dir;
  KeyPair kp = KeyPair::generate();
  auto from_hex = load_public_key(kp.pub.hex());
  REQUIRE(from_hex.ok());
  CHECK(*from_hex == kp.pub);
  std::string upper = kp.pub.hex();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(*load_public_key(upper) == kp.pub);

  const fs::path file = dir.path / "log.pub";
  write_text(file, "  \n" + kp.pub.hex() + " \r\n\n", 0644);
  auto from_file = load_public_key(file.string());
  REQUIRE(from_file.ok());
  CHECK(*from_file == kp.pub);
}

TEST_CASE("keys: bad hex and bad files are refused saying what was tried") {
  TempDir dir;
  // 64 characters but not hex, and no such file.
  std::string not_hex(64, 'g');
  auto r = load_public_key(not_hex);
  REQUIRE(!r.ok());
  CHECK(contains(r.error().message, "not 64 hex digits"));
  CHECK(contains(r.error().message, "No such file"));
  CHECK(!load_public_key("abcd").ok());
  CHECK(PublicKey::from_hex(std::string(63, 'a')).error().code == Errc::bad_value);

  const fs::path file = dir.path / "short.pub";
  write_text(file, "abcd\n", 0644);
  r = load_public_key(file.string());
  REQUIRE(!r.ok());
  CHECK(contains(r.error().message, file.string()));
  CHECK(contains(r.error().message, "64 hex digits"));

  // Secret key files: wrong length, non-hex, damaged public half.
  KeyPair kp = KeyPair::generate();
  std::string good = to_hex(ByteView(kp.secret.bytes()));
  const fs::path sk = dir.path / "sk";
  write_text(sk, good.substr(0, 127) + "\n", 0600);
  CHECK(contains(load_secret_key(sk).error().message, "128 hex digits"));
  write_text(sk, good + "\n\n", 0600);
  CHECK(load_secret_key(sk).error().code == Errc::bad_value);
  std::string non_hex = good;
  non_hex[5] = 'x';
  write_text(sk, non_hex, 0600);
  CHECK(contains(load_secret_key(sk).error().message, "offset 5"));
  std::string damaged = good;
  damaged[127] = damaged[127] == '0' ? '1' : '0';  // last digit of the public half
  write_text(sk, damaged, 0600);
  auto d = load_secret_key(sk);
  REQUIRE(!d.ok());
  CHECK(contains(d.error().message, "damaged"));
  write_text(sk, good, 0600);  // no newline is fine
  CHECK(load_secret_key(sk).ok());
  CHECK(load_secret_key(dir.path / "missing").error().code == Errc::not_found);
}

}  // namespace swarmlite
