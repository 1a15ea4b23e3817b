/*
 * Ferrite's driver ABI, for drivers written in C.
 *
 * A driver is a shared library exporting one symbol:
 *
 *   const FerriteDriverApi *ferrite_driver_entry(const FerriteHostApi *host);
 *
 * The host calls it once; both tables live for the rest of the process. Every table and
 * info struct begins with its size in bytes; fields are only ever appended (a minor version),
 * so check `size` before reading a field newer than the minor you were built against.
 * The host refuses a driver of another major, or of a newer minor than its own.
 * Only `execute` is required; every other entry point may be NULL.
 * Strings are FerriteStr: pointer + length, UTF-8, not NUL-terminated, borrowed for the call.
 * Errors are host-owned FerriteError pointers made with host->error_new; NULL is success.
 */

#ifndef FERRITE_DRIVER_H
#define FERRITE_DRIVER_H

/* Generated from drivers/abi/src by cbindgen (see drivers/abi/tests/header.rs); do not edit. */

#include <stddef.h>
#include <stdint.h>

/*
 Major version: bumped on any incompatible change. The host refuses other majors.
 */
#define FERRITE_ABI_MAJOR 1

/*
 Minor version: bumped when fields are appended. The host accepts drivers built for its minor
 or an older one.

 - 1.0: the first ABI.
 - 1.1: [`HostApi::request_complete`] (the final flag without a response, for decoupled
   models) and [`HostApi::request_cancelled`] (whether anyone still waits for a request).
 - 1.2: [`DriverApi::memory_open`], [`DriverApi::memory_read`], [`DriverApi::memory_write`]
   and [`DriverApi::memory_close`]: device memory another process shares with the server
   (CUDA shared memory: a `cudaIpcMemHandle_t`), opened and copied by the driver that owns
   the device.
 - 1.3: [`HostApi::metric`]: a driver's own metrics on the server's Prometheus endpoint
   (Triton's custom metrics).
 */
#define FERRITE_ABI_MINOR 3

/*
 Flag for [`HostApi::response_send`] and [`HostApi::request_complete`]: this is the
 request's last response.
 */
#define FERRITE_RESPONSE_FLAG_FINAL 1

/*
 Bits of [`DriverApi::instance_kinds`].
 */
#define FERRITE_INSTANCE_KIND_CPU (1 << 0)

#define FERRITE_INSTANCE_KIND_GPU (1 << 1)

#define FERRITE_INSTANCE_KIND_MODEL (1 << 2)

/*
 Log levels for [`HostApi::log`].
 */
#define FERRITE_LOG_ERROR 0

#define FERRITE_LOG_WARN 1

#define FERRITE_LOG_INFO 2

#define FERRITE_LOG_VERBOSE 3

/*
 [`HostApi::metric`]: a value that only grows (added to).
 */
#define METRIC_COUNTER 0

/*
 [`HostApi::metric`]: a value that is set.
 */
#define METRIC_GAUGE 1

/*
 Triton's eight error codes (`TRITONSERVER_Error_Code`, same order).
 */
enum FerriteErrorCode
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  FERRITE_ERROR_CODE_UNKNOWN = 0,
  FERRITE_ERROR_CODE_INTERNAL = 1,
  FERRITE_ERROR_CODE_NOT_FOUND = 2,
  FERRITE_ERROR_CODE_INVALID_ARG = 3,
  FERRITE_ERROR_CODE_UNAVAILABLE = 4,
  FERRITE_ERROR_CODE_UNSUPPORTED = 5,
  FERRITE_ERROR_CODE_ALREADY_EXISTS = 6,
  FERRITE_ERROR_CODE_CANCELLED = 7,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum FerriteErrorCode FerriteErrorCode;
#else
typedef uint32_t FerriteErrorCode;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 Where a buffer lives.
 */
enum FerriteMemoryKind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  FERRITE_MEMORY_KIND_CPU = 0,
  FERRITE_MEMORY_KIND_CPU_PINNED = 1,
  FERRITE_MEMORY_KIND_GPU = 2,
  FERRITE_MEMORY_KIND_NEURON = 3,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum FerriteMemoryKind FerriteMemoryKind;
#else
typedef uint32_t FerriteMemoryKind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 Tensor element types. The numbering is the model configuration's `DataType` enum
 (`TYPE_BOOL` = 1 ... `TYPE_BF16` = 14), which is also `TRITONSERVER_DataType`'s.
 */
enum FerriteDataType
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  FERRITE_DATA_TYPE_BOOL = 1,
  FERRITE_DATA_TYPE_UINT8 = 2,
  FERRITE_DATA_TYPE_UINT16 = 3,
  FERRITE_DATA_TYPE_UINT32 = 4,
  FERRITE_DATA_TYPE_UINT64 = 5,
  FERRITE_DATA_TYPE_INT8 = 6,
  FERRITE_DATA_TYPE_INT16 = 7,
  FERRITE_DATA_TYPE_INT32 = 8,
  FERRITE_DATA_TYPE_INT64 = 9,
  FERRITE_DATA_TYPE_FP16 = 10,
  FERRITE_DATA_TYPE_FP32 = 11,
  FERRITE_DATA_TYPE_FP64 = 12,
  /*
   Variable-length bytes (`TYPE_STRING` in a config, `BYTES` on the wire).
   */
  FERRITE_DATA_TYPE_BYTES = 13,
  FERRITE_DATA_TYPE_BF16 = 14,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum FerriteDataType FerriteDataType;
#else
typedef uint32_t FerriteDataType;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/*
 A borrowed UTF-8 string: pointer and length, no terminating NUL.
 */
typedef struct FerriteStr {
  const uint8_t *ptr;
  size_t len;
} FerriteStr;

/*
 Opaque host-owned error. Made by [`HostApi::error_new`].
 */
typedef struct FerriteError {
  uint8_t _private[0];
} FerriteError;

/*
 What the host tells a driver when it initialises it.
 */
typedef struct FerriteDriverInfo {
  size_t size;
  /*
   Path of the driver's shared library file.
   */
  struct FerriteStr path;
  /*
   The directory holding it (drivers find their own dependencies there).
   */
  struct FerriteStr directory;
  /*
   Settings for this driver (`--backend-config=<driver>,<key>=<value>`) as a JSON object of
   strings.
   */
  struct FerriteStr config_json;
} FerriteDriverInfo;

/*
 `driver_init`: makes the driver's global state.
 */
typedef struct FerriteError *(*FerriteDriverInitFn)(const struct FerriteDriverInfo *info, void **state);

/*
 `driver_fini`, `model_unload`, `instance_destroy`: frees a state.
 */
typedef void (*FerriteFiniFn)(void *state);

/*
 What the host tells a driver when it loads one version of a model.
 */
typedef struct FerriteModelInfo {
  size_t size;
  struct FerriteStr name;
  int64_t version;
  /*
   The model's directory in the repository.
   */
  struct FerriteStr model_path;
  /*
   The version's directory (`<model_path>/<version>`).
   */
  struct FerriteStr version_path;
  /*
   The model configuration as given (protobuf JSON, Triton's field names).
   */
  struct FerriteStr config_json;
  /*
   Non-zero when the driver should fill in what the configuration leaves out (inputs,
   outputs, max_batch_size) from the model file, through [`HostApi::model_set_config`].
   */
  uint32_t auto_complete;
} FerriteModelInfo;

/*
 Opaque host-owned handle of a model being loaded.
 */
typedef struct FerriteModel {
  uint8_t _private[0];
} FerriteModel;

/*
 `model_load`: loads one version of a model.
 */
typedef struct FerriteError *(*FerriteModelLoadFn)(void *driver_state, const struct FerriteModelInfo *info, struct FerriteModel *model, void **state);

/*
 What the host tells a driver when it creates a model instance.
 */
typedef struct FerriteInstanceInfo {
  size_t size;
  /*
   `<group name>_<index>`, e.g. `simple_0_0`.
   */
  struct FerriteStr name;
  /*
   One of the `INSTANCE_KIND_*` bits.
   */
  uint32_t kind;
  /*
   GPU ordinal (KIND_GPU) or -1.
   */
  int32_t device_id;
  /*
   The final, validated model configuration (protobuf JSON).
   */
  struct FerriteStr config_json;
} FerriteInstanceInfo;

/*
 `instance_create`: makes one instance of a loaded model.
 */
typedef struct FerriteError *(*FerriteInstanceCreateFn)(void *model_state, const struct FerriteInstanceInfo *info, void **state);

/*
 Where a buffer lives.
 */
typedef struct FerriteMemory {
  /*
   A [`MemoryKind`] value.
   */
  uint32_t kind;
  /*
   GPU ordinal or NeuronCore index; 0 for CPU memory.
   */
  int64_t device_id;
} FerriteMemory;

/*
 A tensor as it crosses the boundary. BYTES elements are laid out as Triton does: each
 element a 4-byte little-endian length followed by its bytes.
 */
typedef struct FerriteTensor {
  struct FerriteStr name;
  /*
   A [`DataType`] value.
   */
  uint32_t datatype;
  const int64_t *shape;
  size_t rank;
  const uint8_t *data;
  size_t byte_size;
  struct FerriteMemory memory;
} FerriteTensor;

/*
 Opaque host-owned handle of a request, from which responses are made.
 */
typedef struct FerriteRequestHandle {
  uint8_t _private[0];
} FerriteRequestHandle;

/*
 One inference request handed to [`DriverApi::execute`].
 */
typedef struct FerriteRequest {
  size_t size;
  /*
   The client's request id ("" when none).
   */
  struct FerriteStr id;
  const struct FerriteTensor *inputs;
  size_t input_count;
  /*
   Names of the outputs the client asked for; none means every output of the model.
   */
  const struct FerriteStr *requested_outputs;
  size_t requested_output_count;
  /*
   The request's parameters as a JSON object ("" when there are none).
   */
  struct FerriteStr parameters_json;
  /*
   Handle for [`HostApi::response_new`].
   */
  struct FerriteRequestHandle *handle;
} FerriteRequest;

/*
 Timestamps a driver may fill in during [`DriverApi::execute`] (from [`HostApi::now_ns`]),
 so the host can split compute time into input, infer and output like Triton. Zero means
 "not reported": the host then counts the whole execution as infer time.
 */
typedef struct FerriteExecuteStats {
  size_t size;
  /*
   When input preparation ended and the model started running.
   */
  uint64_t infer_start_ns;
  /*
   When the model finished and output preparation started.
   */
  uint64_t infer_end_ns;
} FerriteExecuteStats;

/*
 `execute`: runs a batch of requests on an instance. Called from the instance's own thread,
 never concurrently for one instance. The driver sends a final response (or error) for every
 request; an error returned here fails every request that got no final response.
 */
typedef struct FerriteError *(*FerriteExecuteFn)(void *instance_state, const struct FerriteRequest *requests, size_t request_count, struct FerriteExecuteStats *stats);

/*
 `memory_open` (1.2): opens device memory that another process shared with the server, for
 `kind` (a [`MemoryKind`]) on device `device_id`: for [`MemoryKind::Gpu`], `handle` holds the
 64 bytes of a CUDA IPC memory handle (`cudaIpcMemHandle_t`) and `byte_size` is how much of
 the allocation the client registered. On success `memory` is the driver's handle for the
 other calls. UNSUPPORTED when the driver does not open memory of that kind.
 */
typedef struct FerriteError *(*MemoryOpenFn)(void *driver_state, uint32_t kind, int64_t device_id, const uint8_t *handle, size_t handle_len, uint64_t byte_size, void **memory);

/*
 `memory_read` (1.2): copies `len` bytes at `offset` of opened memory into host memory
 `dst`; `memory_write`: copies `len` bytes from host memory `src` to `offset`. The host
 checks `offset + len` against the registered size before calling. The copy is complete
 when the call returns. Called from any thread.
 */
typedef struct FerriteError *(*MemoryReadFn)(void *memory, uint64_t offset, uint8_t *dst, size_t len);

typedef struct FerriteError *(*MemoryWriteFn)(void *memory, uint64_t offset, const uint8_t *src, size_t len);

/*
 The driver's table, returned by its entry point. Valid for the process lifetime.
 */
typedef struct FerriteDriverApi {
  size_t size;
  uint32_t abi_major;
  uint32_t abi_minor;
  struct FerriteStr name;
  struct FerriteStr version;
  /*
   `backend` names in config.pbtxt that this driver serves (e.g. "onnxruntime").
   */
  const struct FerriteStr *backends;
  size_t backend_count;
  /*
   `platform` names in config.pbtxt that this driver serves (e.g. "onnxruntime_onnx").
   */
  const struct FerriteStr *platforms;
  size_t platform_count;
  /*
   The instance kinds it can run, as `INSTANCE_KIND_*` bits.
   */
  uint32_t instance_kinds;
  /*
   Bit `1 << t` is set for each [`DataType`] value `t` it supports.
   */
  uint64_t datatypes;
  FerriteDriverInitFn driver_init;
  FerriteFiniFn driver_fini;
  FerriteModelLoadFn model_load;
  FerriteFiniFn model_unload;
  FerriteInstanceCreateFn instance_create;
  FerriteFiniFn instance_destroy;
  FerriteExecuteFn execute;
  /*
   1.2: device memory shared by other processes (see [`MemoryOpenFn`]); all optional.
   */
  MemoryOpenFn memory_open;
  MemoryReadFn memory_read;
  MemoryWriteFn memory_write;
  /*
   Closes memory opened by `memory_open`, once no copy is running on it.
   */
  FerriteFiniFn memory_close;
} FerriteDriverApi;

/*
 Opaque host-owned response under construction.
 */
typedef struct FerriteResponse {
  uint8_t _private[0];
} FerriteResponse;

/*
 The host's functions, handed to the driver's entry point. Valid for the process lifetime.
 */
typedef struct FerriteHostApi {
  size_t size;
  uint32_t abi_major;
  uint32_t abi_minor;
  /*
   Writes a line to the server log, at one of the `LOG_*` levels.
   */
  void (*log)(uint32_t level, struct FerriteStr message);
  /*
   Makes an error to return or send. The host owns it.
   */
  struct FerriteError *(*error_new)(uint32_t code, struct FerriteStr message);
  /*
   The code of an error the host returned.
   */
  uint32_t (*error_code)(const struct FerriteError *error);
  /*
   The message of an error the host returned, valid until it is deleted.
   */
  struct FerriteStr (*error_message)(const struct FerriteError *error);
  /*
   Frees an error the host returned and the driver does not pass on.
   */
  void (*error_delete)(struct FerriteError *error);
  /*
   During `model_load`: replaces the model's configuration (protobuf JSON), e.g. after
   auto-completing it from the model file.
   */
  struct FerriteError *(*model_set_config)(struct FerriteModel *model, struct FerriteStr config_json);
  /*
   Starts a response to a request.
   */
  struct FerriteError *(*response_new)(struct FerriteRequestHandle *request, struct FerriteResponse **response);
  /*
   Adds an output to a response and returns a buffer of `byte_size` bytes for the driver to
   fill before sending. `memory` is the preferred placement on entry and the actual one on
   return.
   */
  struct FerriteError *(*response_output)(struct FerriteResponse *response, struct FerriteStr name, uint32_t datatype, const int64_t *shape, size_t rank, size_t byte_size, struct FerriteMemory *memory, uint8_t **buffer);
  /*
   Sends a response, or an error in its place (`error` non-null: the response's outputs
   are dropped and the host takes ownership of the error). With [`RESPONSE_FLAG_FINAL`] it
   is the request's last. The response handle is invalid afterwards, even on error.
   */
  struct FerriteError *(*response_send)(struct FerriteResponse *response, uint32_t flags, struct FerriteError *error);
  /*
   Drops a response without sending it (its outputs are freed; the request still needs
   a final response).
   */
  void (*response_delete)(struct FerriteResponse *response);
  /*
   The host's monotonic clock in nanoseconds, for [`ExecuteStats`].
   */
  uint64_t (*now_ns)(void);
  /*
   Since 1.1. Ends a request of a decoupled model without sending another response:
   `flags` must be [`RESPONSE_FLAG_FINAL`]. A decoupled model may answer a request with
   responses sent without the flag and then this, or with no response at all. Refused
   (an error is returned) for models that are not decoupled, whose one response is final.
   */
  struct FerriteError *(*request_complete)(struct FerriteRequestHandle *request, uint32_t flags);
  /*
   Since 1.1. Non-zero once nobody waits for the request's responses any more (the client
   went away or cancelled it): a driver that takes long over one request (a decoupled
   stream, above all) checks it and ends the request early.
   */
  uint32_t (*request_cancelled)(struct FerriteRequestHandle *request);
  /*
   Since 1.3. Records one of the driver's own metrics for the server's Prometheus endpoint
   (Triton's custom metrics): family `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`) with `help` text,
   of `kind` [`METRIC_COUNTER`] (`value`, at least 0, is added) or [`METRIC_GAUGE`]
   (`value` is set), for the label set `labels_json` (a JSON object of strings; empty for
   none). Returns an error for a bad name, label or value, or a family recorded before
   with another kind or help.
   */
  struct FerriteError *(*metric)(struct FerriteStr name, struct FerriteStr help, uint32_t kind, struct FerriteStr labels_json, double value);
} FerriteHostApi;

/*
 The type of [`DRIVER_ENTRY_SYMBOL`].
 */
typedef const struct FerriteDriverApi *(*FerriteDriverEntryFn)(const struct FerriteHostApi *host);

#endif  /* FERRITE_DRIVER_H */
