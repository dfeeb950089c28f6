/* bench/ingress/common.h - what both servers of bench/ingress.sh answer */
#define RESP_BODY "{\"status\":\"accepted\",\"session\":\"s-0123456789abcdef\",\"seq\":1,\"stored\":true,\"pad\":\"xxxxxxxxxxxxx\"}"
#define RESP_LEN (sizeof(RESP_BODY) - 1)
#define PATH_PREFIX "/v2/traces/sessions/"
_Static_assert(sizeof(RESP_BODY) - 1 == 96, "response body must be 96 bytes");
