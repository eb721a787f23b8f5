// Python's connection authentication: the pure protocol (handshake.hpp) and the public
// deliver_challenge / answer_challenge over a Connection (mproc/auth.hpp).
#include "mproc/auth.hpp"

#include <algorithm>
#include <cstring>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ipc/handshake.hpp"
#include "mproc/error.hpp"
#include "sys/random.hpp"

namespace mproc {

namespace detail {

namespace {

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
// What this side offers: Python 3.12's default.
constexpr std::string_view kOfferedDigest = "sha256";
// A legacy message or response: 20 random bytes (3.11's challenge) or a raw HMAC-MD5.
constexpr std::size_t kLegacyLengths[] = {20, 16};
// A legacy challenge is 20 bytes; anything shorter cannot be a challenge at all.
constexpr std::size_t kMinChallenge = 20;
// Python's _MAX_DIGEST_LEN: the longest digest name looked for between the braces.
constexpr std::size_t kMaxDigestName = 20;

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

std::vector<std::byte> to_vector(std::string_view text) {
  auto bytes = bytes_of(text);
  return {bytes.begin(), bytes.end()};
}

bool starts_with(std::span<const std::byte> bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() && std::memcmp(bytes.data(), prefix.data(), prefix.size()) == 0;
}

bool equals(std::span<const std::byte> bytes, std::string_view text) {
  return bytes.size() == text.size() && starts_with(bytes, text);
}

const EVP_MD* digest_by_python_name(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;  // Python's _ALLOWED_DIGESTS and nothing else
}

// Python's _get_digest_name_and_payload: ("", message) for a legacy message, (name, rest)
// for "{name}rest" with a known name, nullopt otherwise.
struct DigestAndPayload {
  std::string digest;
  std::span<const std::byte> payload;
};
std::optional<DigestAndPayload> split_digest(std::span<const std::byte> message) {
  if (std::find(std::begin(kLegacyLengths), std::end(kLegacyLengths), message.size()) != std::end(kLegacyLengths))
    return DigestAndPayload{"", message};
  if (message.empty() || message[0] != std::byte{'{'}) return std::nullopt;
  const std::size_t search_end = std::min(message.size(), kMaxDigestName + 2);
  for (std::size_t i = 1; i < search_end; ++i) {
    if (message[i] != std::byte{'}'}) continue;
    std::string name(reinterpret_cast<const char*>(message.data()) + 1, i - 1);
    if (!digest_by_python_name(name)) return std::nullopt;
    return DigestAndPayload{std::move(name), message.subspan(i + 1)};
  }
  return std::nullopt;
}

std::string printable(std::span<const std::byte> bytes) {
  std::string out;
  const std::size_t shown = std::min<std::size_t>(bytes.size(), 32);
  for (std::size_t i = 0; i < shown; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (bytes.size() > shown) out += "...";
  return out;
}

}  // namespace

std::optional<std::vector<std::byte>> hmac(std::string_view digest, std::string_view key,
                                           std::span<const std::byte> message) {
  const EVP_MD* md = digest_by_python_name(digest);
  if (!md) return std::nullopt;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // An empty key is a key (Python's b""): pass a valid pointer, never null, whatever its length.
  static const unsigned char no_key = 0;
  const void* key_bytes = key.empty() ? static_cast<const void*>(&no_key) : key.data();
  static const unsigned char no_data = 0;
  const auto* data = message.empty() ? &no_data : reinterpret_cast<const unsigned char*>(message.data());
  if (!::HMAC(md, key_bytes, static_cast<int>(key.size()), data, message.size(), out, &length)) return std::nullopt;
  auto* first = reinterpret_cast<const std::byte*>(out);
  return std::vector<std::byte>(first, first + length);
}

std::optional<std::vector<std::byte>> create_response(std::string_view key, std::span<const std::byte> message,
                                                      std::string& why) {
  auto split = split_digest(message);
  if (!split) {
    // A 3.12 peer refuses such a message; so do we (a legacy peer never sends one).
    why = "unsupported challenge length, missing digest prefix, or unsupported digest: b'" + printable(message) + "'";
    return std::nullopt;
  }
  const std::string digest = split->digest.empty() ? "md5" : split->digest;
  auto mac = hmac(digest, key, message);  // the whole message: prefix included
  if (!mac) {
    why = "digest " + digest + " unavailable";
    return std::nullopt;
  }
  if (split->digest.empty()) return mac;  // legacy: the raw HMAC-MD5
  std::vector<std::byte> response = to_vector("{" + digest + "}");
  response.insert(response.end(), mac->begin(), mac->end());
  return response;
}

bool verify_response(std::string_view key, std::span<const std::byte> message, std::span<const std::byte> response,
                     std::string& why) {
  auto split = split_digest(response);
  if (!split) {
    why = "unsupported response length, missing digest prefix, or unsupported digest";
    return false;
  }
  const std::string digest = split->digest.empty() ? "md5" : split->digest;
  auto expected = hmac(digest, key, message);
  if (!expected) {
    why = "digest " + digest + " unavailable";
    return false;
  }
  if (expected->size() != split->payload.size()) {
    why = "expected a " + digest + " digest of " + std::to_string(expected->size()) + " bytes, got " +
          std::to_string(split->payload.size());
    return false;
  }
  // Constant time: how many leading bytes matched must not show in the timing.
  if (::CRYPTO_memcmp(expected->data(), split->payload.data(), expected->size()) != 0) {
    why = "digest received was wrong";
    return false;
  }
  return true;
}

Handshake::Handshake(Role role, std::string key, std::span<const std::byte, kChallengeRandomBytes> random)
    : key_(std::move(key)) {
  switch (role) {
    case Role::server:
      deliver_phase_[0] = true, deliver_phase_[1] = false, phases_ = 2;
      break;
    case Role::client:
      deliver_phase_[0] = false, deliver_phase_[1] = true, phases_ = 2;
      break;
    case Role::deliver:
      deliver_phase_[0] = true, phases_ = 1;
      break;
    case Role::answer:
      deliver_phase_[0] = false, phases_ = 1;
      break;
  }
  challenge_ = to_vector("{" + std::string(kOfferedDigest) + "}");
  challenge_.insert(challenge_.end(), random.begin(), random.end());
  start_phase();
}

std::vector<std::vector<std::byte>> Handshake::take_outgoing() { return std::exchange(outgoing_, {}); }

void Handshake::start_phase() {
  if (phase_ == phases_) {
    stage_ = Stage::done;
    return;
  }
  if (deliver_phase_[phase_]) {
    std::vector<std::byte> message = to_vector(kChallenge);
    message.insert(message.end(), challenge_.begin(), challenge_.end());
    outgoing_.push_back(std::move(message));
    stage_ = Stage::await_response;
  } else {
    stage_ = Stage::await_challenge;
  }
}

void Handshake::finish_phase() {
  ++phase_;
  start_phase();
}

void Handshake::fail(std::string why) {
  stage_ = Stage::failed;
  error_ = std::move(why);
}

void Handshake::on_message(std::span<const std::byte> message) {
  std::string why;
  switch (stage_) {
    case Stage::await_response:
      if (verify_response(key_, challenge_, message, why)) {
        outgoing_.push_back(to_vector(kWelcome));
        finish_phase();
      } else {
        outgoing_.push_back(to_vector(kFailure));
        fail(why);
      }
      return;
    case Stage::await_challenge: {
      if (!starts_with(message, kChallenge)) {
        fail("protocol error, expected a challenge, got b'" + printable(message) + "'");
        return;
      }
      auto body = message.subspan(kChallenge.size());
      if (body.size() < kMinChallenge) {
        fail("challenge too short: " + std::to_string(body.size()) + " bytes");
        return;
      }
      auto response = create_response(key_, body, why);
      if (!response) {
        fail(why);
        return;
      }
      outgoing_.push_back(std::move(*response));
      stage_ = Stage::await_welcome;
      return;
    }
    case Stage::await_welcome:
      if (equals(message, kWelcome)) {
        finish_phase();
      } else {
        fail(equals(message, kFailure) ? "digest sent was rejected (the peer's key differs)"
                                       : "protocol error, expected #WELCOME#, got b'" + printable(message) + "'");
      }
      return;
    case Stage::done:
    case Stage::failed:
      fail("handshake message after the handshake ended");
      return;
  }
}

std::size_t HandshakeReader::declared() const noexcept {
  auto b = [&](int i) { return static_cast<std::uint32_t>(buffer_[static_cast<std::size_t>(i)]); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

std::size_t HandshakeReader::wanted() const noexcept {
  if (buffer_.size() < 4) return 4 - buffer_.size();
  return 4 + declared() - buffer_.size();
}

bool HandshakeReader::feed(std::span<const std::byte> bytes, std::string& why) {
  const std::size_t take = std::min(bytes.size(), wanted());
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
  if (buffer_.size() == 4) {
    // Checked before any byte of the body is read: a negative length (Python's -1 marks the
    // 8-byte form) or one over the limit ends the handshake here.
    const std::size_t length = declared();
    if (length > kMaxHandshakeMessage) {
      why = "handshake message of " +
            (length & 0x80000000U ? std::string("negative or 8-byte") : std::to_string(length)) +
            " length refused (at most " + std::to_string(kMaxHandshakeMessage) + " bytes before authentication)";
      return false;
    }
  }
  return true;
}

bool HandshakeReader::complete() const noexcept { return buffer_.size() >= 4 && wanted() == 0; }

std::span<const std::byte> HandshakeReader::message() const noexcept {
  return std::span<const std::byte>(buffer_).subspan(4);
}

std::vector<std::byte> frame_handshake_message(std::span<const std::byte> message) {
  const auto n = static_cast<std::uint32_t>(message.size());
  std::vector<std::byte> framed{std::byte(n >> 24), std::byte(n >> 16), std::byte(n >> 8), std::byte(n)};
  framed.insert(framed.end(), message.begin(), message.end());
  return framed;
}

}  // namespace detail

namespace {

void run_over_connection(Connection& connection, std::string_view authkey, detail::Handshake::Role role) {
  std::byte random[detail::kChallengeRandomBytes];
  if (int rc = sys::fill_random(random, sizeof random); rc < 0) throw OSError(-rc, "getrandom");
  detail::Handshake handshake(role, std::string(authkey), random);
  for (;;) {
    for (const auto& message : handshake.take_outgoing()) connection.send_bytes(message);
    if (handshake.failed()) throw AuthenticationError(handshake.error());
    if (handshake.done()) return;
    std::vector<std::byte> message = connection.recv_bytes(detail::kMaxHandshakeMessage);
    handshake.on_message(message);
  }
}

}  // namespace

void deliver_challenge(Connection& connection, std::string_view authkey) {
  run_over_connection(connection, authkey, detail::Handshake::Role::deliver);
}

void answer_challenge(Connection& connection, std::string_view authkey) {
  run_over_connection(connection, authkey, detail::Handshake::Role::answer);
}

}  // namespace mproc
