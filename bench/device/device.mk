# device.mk - the device encode path's footprint (make bench runs it):
#
#   make -f bench/device/device.mk O=build
#
# Cortex-M4 (Debian's gcc-arm-none-eabi + newlib nano), -Os, one section
# per function, --gc-sections: bench/device/main.c with sw_pb_encode, and
# the same program without the encoder (-DBASELINE); the difference is the
# encode path. Debian ships nanopb's runtime only as an x86-64 library (no
# sources to cross-compile), so nanopb vs sessionwire is also measured on
# x86-64 with the host compiler, the same way.
# Outputs $(O)/device/*.elf, *.size (arm-none-eabi-size / size output).

O ?= build
D := $(O)/device
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
NPB := $(O)/gen/nanopb

# What sw_pb_encode can reach: the linker keeps only what it does reach.
SW_SRC := codec/pb_encode.c codec/pb_compact.c codec/id.c codec/update.c \
	codec/status.c codec/block.c codec/utf8.c codec/date.c
SW_HDR := $(wildcard codec/*.h codec/include/sessionwire/*.h)
COMMON := -Os -ffunction-sections -fdata-sections -std=gnu11 \
	-ffp-contract=off -fno-strict-aliasing -Icodec/include -Icodec -I$(NPB)
ARM_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft $(COMMON)
ARM_LD := -Wl,--gc-sections --specs=nano.specs --specs=nosys.specs -lm
HOST_LD := -Wl,--gc-sections -lm

HAVE_ARM := $(shell command -v $(ARM_CC))
HAVE_NANOPB := $(wildcard /usr/include/pb_encode.h $(NPB)/sessionwire.pb.c)

ELFS := $(if $(HAVE_ARM),$(D)/m4-sw.elf $(D)/m4-base.elf) \
	$(D)/x86-sw.elf $(D)/x86-base.elf \
	$(if $(word 2,$(HAVE_NANOPB)),$(D)/x86-nanopb.elf)

all: $(ELFS:.elf=.size)

$(D)/m4-sw.elf: bench/device/main.c $(SW_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) -o $@ $(filter %.c,$^) $(ARM_LD) -Wl,-Map=$(@:.elf=.map)

$(D)/m4-base.elf: bench/device/main.c
	@mkdir -p $(D)
	$(ARM_CC) $(ARM_FLAGS) -DBASELINE -o $@ $^ $(ARM_LD)

$(D)/x86-sw.elf: bench/device/main.c $(SW_SRC) $(SW_HDR)
	@mkdir -p $(D)
	$(CC) $(COMMON) -o $@ $(filter %.c,$^) $(HOST_LD)

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
