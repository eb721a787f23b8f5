// mproc/auth.hpp — Python's deliver_challenge / answer_challenge over any Connection.
//
// Listener and Client run these for you when given an authkey; call them yourself only to
// authenticate a connection made another way (e.g. a Pipe end passed to an untrusted
// process), exactly as in Python. Both speak Python's wire protocol: the modern
// b"{sha256}" challenge of Python 3.12+ is what mproc delivers, and both schemes (that one
// and the legacy HMAC-MD5 of Python <= 3.11) are answered and accepted.
//
// Authentication is not encryption: it proves that the peer knows the key, and nothing
// after it is secret or protected from tampering. See docs/guide.md ("talking to Python").
#pragma once

#include <string_view>

#include "mproc/connection.hpp"

namespace mproc {

/// Sends a random challenge, checks the peer's HMAC of it under `authkey`, and tells the
/// peer the outcome (#WELCOME# or #FAILURE#). Effects: reads at most 256 bytes.
/// Throws: AuthenticationError (wrong key, or not the protocol), EOFError / OSError (the
/// connection failed). Threads: as Connection's send and recv together.
void deliver_challenge(Connection& connection, std::string_view authkey);

/// Answers the peer's challenge with the HMAC under `authkey` and reads the verdict.
/// Throws: AuthenticationError (the peer refused the key, or not the protocol), EOFError /
/// OSError. Threads: as deliver_challenge.
void answer_challenge(Connection& connection, std::string_view authkey);

}  // namespace mproc
