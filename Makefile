# Container images of the refinery. Builder bases are built for ARCH (default s390x; on a
# non-Z host the engine needs qemu-user binfmt and, for docker, buildx):
#   make build-rocky|build-fedora|build-ubuntu ARCH=s390x TAG=latest REGISTRY=local
#   make build-web TAG=latest REGISTRY=local          (the control panel, host arch)
#   make build-debian ARCH=s390x                      (from Debian's archive: no registry)
# docs/containers.md explains the presets and how `refinery` uses the images.

TAG ?= latest
REGISTRY ?= local
ARCH ?= s390x
PYTHON_VERSION ?= 3.11
ENGINE ?= docker
# the debian image is imported into podman, the engine `refinery` runs builds with
DEBIAN_ENGINE ?= podman
IMAGE_CACHE ?= /var/cache/refinery-images
DEBIAN_FLAGS ?=

OCI_ARCH = $(patsubst x86_64,amd64,$(patsubst aarch64,arm64,$(patsubst ppc64el,ppc64le,$(ARCH))))

.PHONY: help build-rocky build-fedora build-ubuntu build-builders build-web build-debian

help:
	@sed -n '1,6p' Makefile | sed 's/^# \{0,1\}//'

build-rocky build-fedora build-ubuntu: build-%:
	$(ENGINE) build --platform linux/$(OCI_ARCH) \
		--build-arg PYTHON_VERSION=$(PYTHON_VERSION) \
		--tag $(REGISTRY)/refinery-$*:$(TAG) \
		--file containers/$*/Dockerfile containers/$*

build-builders: build-rocky build-fedora build-ubuntu

build-web:
	$(ENGINE) build --tag $(REGISTRY)/refinery-web:$(TAG) --file containers/web/Dockerfile .

build-debian:
	bash containers/debian/bootstrap.sh --arch $(ARCH) --cache-dir $(IMAGE_CACHE) \
		--engine $(DEBIAN_ENGINE) $(DEBIAN_FLAGS)
