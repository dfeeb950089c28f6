/* read_input.h - reading a whole input stream for the CLI commands. */
#ifndef SW_CLI_READ_INPUT_H
#define SW_CLI_READ_INPUT_H

#include <stddef.h>
#include <stdio.h>

/* Reads all of f into a malloc'd buffer (free it) and sets *len. NULL on a
 * read error, out of memory, or more than max bytes (errno EFBIG). */
char *cli_read_input(FILE *f, size_t max, size_t *len);

#endif
