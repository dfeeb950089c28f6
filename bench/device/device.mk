# device.mk - the device encode path's footprint (make bench runs it):
#
#   make -f bench/device/device.mk O=build
#
# Cortex-M4 (Debian's gcc-arm-none-eabi + newlib nano), -Os, one section
# per function, --gc-sections: bench/device/main.c with sw_pb_encode, and
# the same program without the encoder (-DBASELINE); the difference is the
# encode path. The same message through the lean device encoder
# (sw_device.h): m4-dev (integers only), m4-devdec (plus a billing of
# non-integral costs as integers at a decimal scale): both must link no
# soft-float routine (checked here); m4-devnum (the costs as doubles).
# $(D)/lean.txt sums them up. Debian ships nanopb's runtime only as an x86-64 library (no
# sources to cross-compile), so nanopb vs sessionwire is also measured on
# x86-64 with the host compiler, the same way.
# Outputs $(O)/device/*.elf, *.size (arm-none-eabi-size / size output),
# lean.txt and lean-x86.txt (text+data over the baseline per encoder).

O ?= build
D := $(O)/device
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
ARM_NM ?= arm-none-eabi-nm
# libgcc's soft-float routines (__aeabi_dadd, __adddf3, __aeabi_f2d ...).
FLOAT_SYMS := -e ' __aeabi_[df]' -e ' __[a-z]*[ds]f[0-9]'
NPB := $(O)/gen/nanopb

# What sw_pb_encode can reach: the linker keeps only what it does reach.
SW_SRC := codec/pb_encode.c codec/pb_compact.c codec/id.c codec/update.c \
	codec/status.c codec/limits.c codec/utf8.c codec/date.c
# What the lean device encoder can reach (pb_compact.c: only the calls
# that take doubles reach it).
DEV_SRC := codec/device.c codec/utf8.c codec/pb_compact.c
SW_HDR := $(wildcard codec/*.h codec/include/sessionwire/*.h)
COMMON := -Os -ffunction-sections -fdata-sections -std=gnu11 \
	-ffp-contract=off -fno-strict-aliasing -Icodec/include -Icodec -I$(NPB)
ARM_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft $(COMMON)
ARM_LD := -Wl,--gc-sections --specs=nano.specs --specs=nosys.specs -lm
HOST_LD := -Wl,--gc-sections -lm

HAVE_ARM := $(shell command -v $(ARM_CC))
HAVE_NANOPB := $(wildcard /usr/include/pb_encode.h $(NPB)/sessionwire.pb.c)

ELFS := $(if $(HAVE_ARM),$(D)/m4-sw.elf $(D)/m4-base.elf $(D)/m4-dev.elf \
	$(D)/m4-devdec.elf $(D)/m4-devnum.elf) \
	$(D)/x86-sw.elf $(D)/x86-base.elf $(D)/x86-dev.elf $(D)/x86-devdec.elf \
	$(if $(word 2,$(HAVE_NANOPB)),$(D)/x86-nanopb.elf)

all: $(ELFS:.elf=.size) $(if $(HAVE_ARM),$(D)/lean.txt) $(D)/lean-x86.txt

$(D)/m4-sw.elf: bench/device/main.c $(SW_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) -o $@ $(filter %.c,$^) $(ARM_LD) -Wl,-Map=$(@:.elf=.map)

$(D)/m4-dev.elf: DEV_DEF := -DDEVICE
$(D)/m4-devdec.elf: DEV_DEF := -DDEVICE_DEC
$(D)/m4-dev.elf $(D)/m4-devdec.elf: bench/device/main.c $(DEV_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) $(DEV_DEF) -o $@ $(filter %.c,$^) $(ARM_LD) -Wl,-Map=$(@:.elf=.map)
	@if $(ARM_NM) $@ | grep -q $(FLOAT_SYMS); then \
		echo "$@: the integer-only device path links floating point:"; \
		$(ARM_NM) $@ | grep $(FLOAT_SYMS); rm -f $@; exit 1; fi

$(D)/m4-devnum.elf: bench/device/main.c $(DEV_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) -DDEVICE_NUMBER -o $@ $(filter %.c,$^) $(ARM_LD) -Wl,-Map=$(@:.elf=.map)

# Text+data over the baseline, one line per build.
$(D)/lean.txt: $(D)/m4-base.size $(D)/m4-sw.size $(D)/m4-dev.size \
		$(D)/m4-devdec.size $(D)/m4-devnum.size
	@awk 'FNR == 2 { td[FILENAME] = $$1 + $$2; t[FILENAME] = $$1; d[FILENAME] = $$2 } \
	END { b = "$(D)/m4-base.size"; \
	n = split("sw_pb_encode:$(D)/m4-sw.size sw_dev_integers:$(D)/m4-dev.size sw_dev_decimal_billing:$(D)/m4-devdec.size sw_dev_double_billing:$(D)/m4-devnum.size", x, " "); \
	for (i = 1; i <= n; i++) { split(x[i], p, ":"); \
		printf "%s text %d data %d total %d\n", p[1], t[p[2]] - t[b], d[p[2]] - d[b], td[p[2]] - td[b] } }' \
		$^ > $@
	@cat $@

# The same on x86-64, next to nanopb when it was built.
$(D)/lean-x86.txt: $(D)/x86-base.size $(D)/x86-sw.size $(D)/x86-dev.size \
		$(D)/x86-devdec.size $(if $(word 2,$(HAVE_NANOPB)),$(D)/x86-nanopb.size)
	@awk 'FNR == 2 { td[FILENAME] = $$1 + $$2 } \
	END { b = "$(D)/x86-base.size"; \
	n = split("sw_pb_encode:$(D)/x86-sw.size sw_dev_integers:$(D)/x86-dev.size sw_dev_decimal_billing:$(D)/x86-devdec.size nanopb:$(D)/x86-nanopb.size", x, " "); \
	for (i = 1; i <= n; i++) { split(x[i], p, ":"); if (p[2] in td) \
		printf "%s total %d\n", p[1], td[p[2]] - td[b] } }' \
		$^ > $@
	@cat $@

$(D)/m4-base.elf: bench/device/main.c
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) -DBASELINE -o $@ $^ $(ARM_LD)

$(D)/x86-sw.elf: bench/device/main.c $(SW_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(CC) $(COMMON) -o $@ $(filter %.c,$^) $(HOST_LD)

$(D)/x86-dev.elf: DEV_DEF := -DDEVICE
$(D)/x86-devdec.elf: DEV_DEF := -DDEVICE_DEC
$(D)/x86-dev.elf $(D)/x86-devdec.elf: bench/device/main.c $(DEV_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(CC) $(COMMON) $(DEV_DEF) -o $@ $(filter %.c,$^) $(HOST_LD)

$(D)/x86-base.elf: bench/device/main.c
	@mkdir -p $(D)
	$(CC) $(COMMON) -DBASELINE -o $@ $^ $(HOST_LD)

$(D)/x86-nanopb.elf: bench/device/main.c $(NPB)/sessionwire.pb.c
	@mkdir -p $(D)
	$(CC) $(COMMON) -DNANOPB -o $@ $^ -lprotobuf-nanopb $(HOST_LD)

$(D)/m4-%.size: $(D)/m4-%.elf
	$(ARM_SIZE) $< > $@

$(D)/x86-%.size: $(D)/x86-%.elf
	size $< > $@

.PHONY: all
