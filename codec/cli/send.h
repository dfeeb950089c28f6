/* send.h - `session-codec send`, the device simulator (send.c). */
#ifndef SW_CLI_SEND_H
#define SW_CLI_SEND_H

/* One line for `session-codec --help`. */
#define CLI_SEND_SUMMARY                                                      \
	"JSON update(s) -> protobuf, sent to a session-gateway (device simulator)"

/* Runs `session-codec send ...`; argv[0] is "send". Returns the exit
 * status: 0 answer 2xx (every batch result 2xx), 1 otherwise or invalid
 * input, 2 usage or transport error. */
int cli_send(int argc, char **argv);

#endif
