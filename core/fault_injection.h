// Tests only: make this process's writes to files under one directory fail as
// if the disk were full (ENOSPC / SQLITE_FULL), to exercise the local-fault
// handling of docs/operations.md ("Local faults") without filling a disk.
// core/file_io.cpp (every write of the log store, key files and evidence store,
// and fdatasync_file for fail_syncs_under) and the page VFS (sqlbridge/engine/page_vfs.cpp) ask
// write_fails() before each write. Off by default; one atomic load when off.
#pragma once

#include <filesystem>

namespace swarmlite::fault_injection {

// From now on, writes fail to `path` itself, to SQLite's companions of it
// (path-wal, path-journal) and, for a directory, to every file under it.
void fail_writes_under(const std::filesystem::path& path);
// From now on, file_io::fdatasync_file fails (EIO, as a disk that lost the
// data would) for files under `path`, as writes do above; writes succeed.
void fail_syncs_under(const std::filesystem::path& path);
// Writes and syncs succeed again.
void clear();
// True if a write to `path` must fail now.
bool write_fails(const char* path);
// True if an fdatasync of `path` must fail now.
bool sync_fails(const char* path);

}  // namespace swarmlite::fault_injection
