/*
 * File copies for disks: a reflink (FICLONE) where the filesystem can, else
 * a sparse copy that skips holes, so forking a VM never costs more space or
 * time than the data it actually has.
 */
#ifndef EMBER_FILEOPS_H
#define EMBER_FILEOPS_H

#include <sys/types.h>

/* Copies src to dst (created with mode, must not exist). 0 or -errno;
 * *reflinked says whether the blocks are shared. */
int file_copy_sparse(const char *src, const char *dst, mode_t mode, int *reflinked);

#endif
