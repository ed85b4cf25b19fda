// Small string helpers shared by every process: errno names for user-facing
// messages, sanitising of peer-supplied bytes before they reach a log, and
// quoting of the command lines messages suggest.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace sluice {

/// Returns the symbolic name of `err` ("EADDRINUSE"), or "E?" for an unknown value.
const char* errno_name(int err) noexcept;

/// Returns "EADDRINUSE (Address already in use)": the name and strerror text.
std::string errno_text(int err);

/// Returns what kind of file `mode` (st_mode) describes, for messages that
/// refuse it: "a regular file", "a directory", "a FIFO (named pipe)", "a
/// character device", "a block device", "a socket", "a symbolic link", or
/// "a file of unknown type".
const char* file_kind(mode_t mode) noexcept;

/// Returns `bytes` with every byte outside printable ASCII replaced by a \xNN
/// escape, cut to `max_len` input bytes. Used for anything a peer supplied
/// (including exception texts that may quote it) before logging or replying.
std::string sanitize(std::string_view bytes, size_t max_len = 256);

/// Returns `text` as one shell word for a command line a message suggests: as
/// it is when it is not empty and has only letters, digits and characters no
/// shell treats specially (./:,~%_-+@=), else in single quotes, a quote inside
/// written '\''. So "*/80" and "[::1]/80" become '*/80' and '[::1]/80', which
/// a shell neither globs nor splits.
std::string shell_word(std::string_view text);

/// Parses a decimal unsigned integer with no sign, no spaces and no leading
/// "+"; returns false on any other character, an empty string, or a value above `max`.
bool parse_uint(std::string_view text, unsigned long max, unsigned long* out) noexcept;

}  // namespace sluice
