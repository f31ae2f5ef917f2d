// Ed25519 keys (libsodium crypto_sign_*). The log id is the primary's public key.
// Key files (docs/formats/keys.md): DIR/primary.key holds the 64-byte secret key
// as 128 hex digits + newline, mode 0600; DIR/primary.pub the public key as 64 hex
// digits + newline. Loading refuses a secret key file that group or others can read.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

struct PublicKey {
  std::array<uint8_t, 32> bytes{};
  std::string hex() const { return to_hex(ByteView(bytes)); }
  static Result<PublicKey> from_hex(std::string_view hex);
  friend bool operator==(const PublicKey&, const PublicKey&) = default;
};

using Signature = std::array<uint8_t, 64>;

// Wiped from memory on destruction.
class SecretKey {
 public:
  SecretKey() = default;
  explicit SecretKey(const std::array<uint8_t, 64>& bytes) : bytes_(bytes) {}
  SecretKey(const SecretKey&) = default;
  SecretKey& operator=(const SecretKey&) = default;
  ~SecretKey();
  const std::array<uint8_t, 64>& bytes() const { return bytes_; }
  PublicKey public_key() const;  // the last 32 bytes of a libsodium secret key

 private:
  std::array<uint8_t, 64> bytes_{};
};

struct KeyPair {
  SecretKey secret;
  PublicKey pub;
  static KeyPair generate();
};

Signature sign(const SecretKey& key, ByteView message);
bool verify_signature(const PublicKey& key, ByteView message, const Signature& sig);

inline constexpr const char* kSecretKeyFile = "primary.key";
inline constexpr const char* kPublicKeyFile = "primary.pub";

// Writes DIR/primary.key (0600, created exclusively: an existing key is never
// overwritten) and DIR/primary.pub. Creates DIR if missing.
Status write_key_files(const std::filesystem::path& dir, const KeyPair& keys);
Result<SecretKey> load_secret_key(const std::filesystem::path& file);
// `hex_or_path`: 64 hex digits, or the path of a .pub file holding them.
Result<PublicKey> load_public_key(std::string_view hex_or_path);

}  // namespace swarmlite
