/* sessionwire.h - everything of libsessioncodec. */
#ifndef SESSIONWIRE_H
#define SESSIONWIRE_H

#include "sw_status.h"
#include "sw_update.h"
#include "sw_buf.h"
#include "sw_num.h"
#include "sw_date.h"
#include "sw_id.h"
#include "sw_json.h"
#include "sw_pb.h"
#include "sw_envelope.h"
#include "sw_device.h"

#endif
