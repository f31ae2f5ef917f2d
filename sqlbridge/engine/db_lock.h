// An exclusive advisory lock (flock) on "<db>-swlock", held while a Primary or
// Replica has the database open, so two writers never share one file. A
// separate file, not the database: closing any descriptor of the database
// would drop SQLite's own POSIX locks on it.
#pragma once

#include <filesystem>

#include "core/result.h"

namespace swarmlite {

// Returns the open descriptor holding the lock; unavailable when another holder has it.
Result<int> lock_database(const std::filesystem::path& db_path);
void unlock_database(int fd);

}  // namespace swarmlite
