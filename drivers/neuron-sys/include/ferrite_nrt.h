/*
 * Ferrite's own declaration of the part of the AWS Neuron Runtime C API (libnrt.so.1) that
 * Ferrite uses, written from the runtime's public API documentation. It is not the vendor's
 * header: it declares only functions that both the 2022 (Inf1-era, runtime 2.x) and current
 * runtimes export, and it keeps every enumeration the runtime has changed as a plain integer.
 *
 * Two traps this header is shaped around:
 *  - nrt_dtype_t was renumbered between runtime versions, so a tensor's data type is an
 *    int32_t here and Ferrite never reads it: sizes come from the tensor's byte size and
 *    types from the model configuration.
 *  - Status codes are integers (newer runtimes add codes); 0 is success.
 *
 * Bindings: drivers/neuron-sys/src/bindings.rs, generated from this file by bindgen in its
 * dynamic-loading mode (the library is opened at run time). Regenerate with
 *   FERRITE_BLESS=1 cargo test -p ferrite-neuron-sys --test bindings
 */
#ifndef FERRITE_NRT_H
#define FERRITE_NRT_H

#include <stddef.h>
#include <stdint.h>

/* A status: NRT_SUCCESS (0) or an error code. */
typedef int32_t NRT_STATUS;

#define NRT_SUCCESS 0
#define NRT_FAILURE 1
#define NRT_INVALID 2
#define NRT_INVALID_HANDLE 3
#define NRT_RESOURCE 4
#define NRT_TIMEOUT 5
#define NRT_HW_ERROR 6
#define NRT_QUEUE_FULL 7
#define NRT_LOAD_NOT_ENOUGH_NC 9
#define NRT_UNSUPPORTED_NEFF_VERSION 10
#define NRT_FAIL_HOST_MEM_ALLOC 11
#define NRT_UNINITIALIZED 13
#define NRT_CLOSED 14
#define NRT_EXEC_BAD_INPUT 1002
#define NRT_EXEC_COMPLETED_WITH_NUM_ERR 1003
#define NRT_EXEC_COMPLETED_WITH_ERR 1004
#define NRT_EXEC_NC_BUSY 1005

/* nrt_init's framework argument: no framework. */
#define NRT_FRAMEWORK_TYPE_NO_FW 1

/* nrt_tensor_allocate's placement argument. */
#define NRT_TENSOR_PLACEMENT_DEVICE 0
#define NRT_TENSOR_PLACEMENT_HOST 1

/* nrt_tensor_info_t.usage */
#define NRT_TENSOR_USAGE_INPUT 0
#define NRT_TENSOR_USAGE_OUTPUT 1

#define NRT_TENSOR_NAME_MAX 256
#define NRT_VERSION_DETAIL_LEN 128
#define NRT_GIT_HASH_LEN 64

/* Opaque handles. */
typedef struct nrt_model nrt_model_t;
typedef struct nrt_tensor nrt_tensor_t;
typedef struct nrt_tensor_set nrt_tensor_set_t;

/* The runtime library's version (nrt_get_version). */
typedef struct nrt_version {
    uint64_t rt_major;
    uint64_t rt_minor;
    uint64_t rt_patch;
    uint64_t rt_maintenance;
    char rt_detail[NRT_VERSION_DETAIL_LEN];
    char git_hash[NRT_GIT_HASH_LEN];
} nrt_version_t;

/* One input or output of a loaded model (nrt_get_model_tensor_info). */
typedef struct nrt_tensor_info {
    char name[NRT_TENSOR_NAME_MAX]; /* NUL-terminated */
    int32_t usage;                  /* NRT_TENSOR_USAGE_* */
    size_t size;                    /* bytes */
    int32_t dtype;                  /* numbering differs between runtimes: not used */
    uint32_t *shape;
    uint32_t ndim;
} nrt_tensor_info_t;

typedef struct nrt_tensor_info_array {
    uint64_t tensor_count;
    nrt_tensor_info_t tensor_array[];
} nrt_tensor_info_array_t;

/* Initialises the runtime; reserves every visible NeuronCore for this process. */
NRT_STATUS nrt_init(int32_t framework, const char *fw_version, const char *fal_version);
/* Releases the runtime (after every model is unloaded). */
void nrt_close(void);
/* Fills the first `size` bytes of `ver`. */
NRT_STATUS nrt_get_version(nrt_version_t *ver, size_t size);
/* NeuronCores on this machine / visible to this process (NEURON_RT_VISIBLE_CORES). */
NRT_STATUS nrt_get_total_nc_count(uint32_t *nc_count);
NRT_STATUS nrt_get_visible_nc_count(uint32_t *nc_count);

/* Loads a compiled model (NEFF bytes) starting at visible core `start_nc`; current runtimes
 * want nc_count -1. */
NRT_STATUS nrt_load(const void *neff_bytes, size_t size, int32_t start_nc, int32_t nc_count,
                    nrt_model_t **model);
NRT_STATUS nrt_unload(nrt_model_t *model);
NRT_STATUS nrt_get_model_tensor_info(nrt_model_t *model, nrt_tensor_info_array_t **tensor_info);
NRT_STATUS nrt_free_model_tensor_info(nrt_tensor_info_array_t *tensor_info);

/* Tensors: `logical_nc_id` is the visible core the memory belongs to. */
NRT_STATUS nrt_tensor_allocate(int32_t tensor_placement, int32_t logical_nc_id, size_t size,
                               const char *name, nrt_tensor_t **tensor);
void nrt_tensor_free(nrt_tensor_t **tensor);
NRT_STATUS nrt_tensor_write(nrt_tensor_t *tensor, const void *buf, size_t offset, size_t size);
NRT_STATUS nrt_tensor_read(const nrt_tensor_t *tensor, void *buf, size_t offset, size_t size);

/* Tensor sets: a model's inputs or outputs by name. */
NRT_STATUS nrt_allocate_tensor_set(nrt_tensor_set_t **result);
NRT_STATUS nrt_add_tensor_to_tensor_set(nrt_tensor_set_t *tensor_set, const char *tensor_name,
                                        nrt_tensor_t *tensor);
void nrt_destroy_tensor_set(nrt_tensor_set_t **tensor_set);

/* Runs the model once (synchronously). */
NRT_STATUS nrt_execute(nrt_model_t *model, const nrt_tensor_set_t *input_set,
                       nrt_tensor_set_t *output_set);

#endif /* FERRITE_NRT_H */
