/* An LD_PRELOAD library that makes writes to one file fail the way a full disk
 * does, for the disk-full tests of the stages: without privileges, mounts or
 * timing, the process sees its writes fail with ENOSPC.
 *
 *   DINV_WRITE_FAULT_PATH   how the path of the watched file(s) ends (not
 *                           MPI-IO's own files beside it)
 *   DINV_WRITE_FAULT_AFTER  bytes this process may write to them; the write
 *                           that would cross the limit and every later one
 *                           fail with ENOSPC (unset: never fails)
 *   DINV_WRITE_FAULT_FREE   bytes statvfs() reports free (any path; unset:
 *                           the real answer)
 *   DINV_WRITE_FAULT_LOG    append "<bytes before> <size> <offset>" for every
 *                           write to a watched file (to choose a limit)
 *
 * Counts are per process (per MPI rank). Covers write, pwrite, writev and
 * pwritev and their 64-bit variants, which is what MPI-IO and HDF5 use. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long written = 0;

static int watched(int fd) {
  const char* want = getenv("DINV_WRITE_FAULT_PATH");
  if (!want || !*want) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = 0;
  const size_t len = (size_t)n, wlen = strlen(want);
  return len >= wlen && strcmp(path + len - wlen, want) == 0;
}

/* Whether this write may go ahead (else errno = ENOSPC). */
static int allowed(int fd, size_t size, long long offset) {
  if (!watched(fd)) return 1;
  pthread_mutex_lock(&lock);
  const char* log = getenv("DINV_WRITE_FAULT_LOG");
  if (log && *log) {
    FILE* f = fopen(log, "a");
    if (f) {
      fprintf(f, "%lld %zu %lld\n", written, size, offset);
      fclose(f);
    }
  }
  const char* after = getenv("DINV_WRITE_FAULT_AFTER");
  static int full = 0;
  if (after && *after && written + (long long)size > atoll(after)) full = 1;
  if (!full) written += (long long)size;
  const int ok = !full;
  pthread_mutex_unlock(&lock);
  if (!ok) errno = ENOSPC;
  return ok;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void* buf, size_t size) {
  return allowed(fd, size, -1) ? REAL(write)(fd, buf, size) : -1;
}

ssize_t pwrite(int fd, const void* buf, size_t size, off_t offset) {
  return allowed(fd, size, (long long)offset) ? REAL(pwrite)(fd, buf, size, offset) : -1;
}

ssize_t pwrite64(int fd, const void* buf, size_t size, off64_t offset) {
  return allowed(fd, size, (long long)offset) ? REAL(pwrite64)(fd, buf, size, offset) : -1;
}

static size_t total(const struct iovec* iov, int count) {
  size_t s = 0;
  for (int i = 0; i < count; ++i) s += iov[i].iov_len;
  return s;
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  return allowed(fd, total(iov, count), -1) ? REAL(writev)(fd, iov, count) : -1;
}

ssize_t pwritev(int fd, const struct iovec* iov, int count, off_t offset) {
  return allowed(fd, total(iov, count), (long long)offset) ? REAL(pwritev)(fd, iov, count, offset) : -1;
}

ssize_t pwritev64(int fd, const struct iovec* iov, int count, off64_t offset) {
  return allowed(fd, total(iov, count), (long long)offset) ? REAL(pwritev64)(fd, iov, count, offset) : -1;
}

/* A file system with DINV_WRITE_FAULT_FREE bytes available. */
int statvfs(const char* path, struct statvfs* out) {
  const int rc = REAL(statvfs)(path, out);
  const char* free_bytes = getenv("DINV_WRITE_FAULT_FREE");
  if (rc == 0 && free_bytes && *free_bytes) out->f_bavail = (fsblkcnt_t)(atoll(free_bytes) / (long long)out->f_frsize);
  return rc;
}
