/*
 * identity: Ferrite's example driver in C, Triton's identity backend as a Ferrite driver.
 *
 * Every input INPUT<n> comes back as output OUTPUT<n>: same data type (BYTES too), same
 * shape, same bytes. A model picks it with `backend: "identity"`.
 *
 * It implements only what a driver must: the entry point and `execute`. Every optional entry
 * point (driver, model and instance init and fini) is left NULL, so there is no state at all.
 * Written against include/ferrite_driver.h alone; built by build.rs with the system's C
 * compiler into <target>/<profile>/identity/libferrite_driver_identity.so.
 */
#include <stdio.h>
#include <string.h>

#include "ferrite_driver.h"

static const FerriteHostApi *host;

static FerriteStr str(const char *s) {
  FerriteStr r = {(const uint8_t *)s, strlen(s)};
  return r;
}

static int str_eq(FerriteStr a, const char *b, size_t b_len) {
  return a.len == b_len && (a.len == 0 || memcmp(a.ptr, b, b_len) == 0);
}

/* Whether the client asked for output `name` (asking for none means all of them). */
static int wanted(const FerriteRequest *request, const char *name, size_t len) {
  if (request->requested_output_count == 0) return 1;
  for (size_t i = 0; i < request->requested_output_count; i++) {
    if (str_eq(request->requested_outputs[i], name, len)) return 1;
  }
  return 0;
}

/* Adds OUTPUT<n> for every INPUT<n> of `request` to `response`; NULL or the first error. */
static FerriteError *copy_inputs(const FerriteRequest *request, FerriteResponse *response) {
  for (size_t i = 0; i < request->input_count; i++) {
    const FerriteTensor *in = &request->inputs[i];
    char name[128];
    if (in->name.len <= 5 || in->name.len > 100 || memcmp(in->name.ptr, "INPUT", 5) != 0) {
      char message[256];
      snprintf(message, sizeof message,
               "identity: input '%.*s' is not named INPUT<n>; its output would be OUTPUT<n>",
               (int)(in->name.len > 100 ? 100 : in->name.len), (const char *)in->name.ptr);
      return host->error_new(FERRITE_ERROR_CODE_INVALID_ARG, str(message));
    }
    size_t len = (size_t)snprintf(name, sizeof name, "OUTPUT%.*s", (int)(in->name.len - 5),
                                  (const char *)in->name.ptr + 5);
    if (!wanted(request, name, len)) continue;
    FerriteStr out_name = {(const uint8_t *)name, len};
    FerriteMemory memory = {FERRITE_MEMORY_KIND_CPU, 0};
    uint8_t *buffer = NULL;
    FerriteError *err = host->response_output(response, out_name, in->datatype, in->shape,
                                              in->rank, in->byte_size, &memory, &buffer);
    if (err != NULL) return err;
    if (in->byte_size > 0) memcpy(buffer, in->data, in->byte_size);
  }
  return NULL;
}

static FerriteError *execute(void *instance_state, const FerriteRequest *requests, size_t count,
                             FerriteExecuteStats *stats) {
  (void)instance_state;
  (void)stats; /* no input/infer/output split: the host counts it all as infer time */
  for (size_t r = 0; r < count; r++) {
    FerriteResponse *response = NULL;
    FerriteError *err = host->response_new(requests[r].handle, &response);
    if (err != NULL) return err;
    /* A bad request gets its error in place of the response; the others are unaffected. */
    err = host->response_send(response, FERRITE_RESPONSE_FLAG_FINAL,
                              copy_inputs(&requests[r], response));
    if (err != NULL) return err;
  }
  return NULL;
}

static const FerriteStr backends[] = {{(const uint8_t *)"identity", 8}};

static FerriteDriverApi api = {
    .size = sizeof(FerriteDriverApi),
    .abi_major = FERRITE_ABI_MAJOR,
    .abi_minor = FERRITE_ABI_MINOR,
    .backends = backends,
    .backend_count = 1,
    .platforms = NULL,
    .platform_count = 0,
    .instance_kinds = FERRITE_INSTANCE_KIND_CPU,
    /* every data type: bits 1 (BOOL) to 14 (BF16) */
    .datatypes = ((1ull << 15) - 1) & ~1ull,
    /* driver_init, driver_fini, model_load, model_unload, instance_create and
       instance_destroy are optional: NULL. */
    .execute = execute,
};

__attribute__((visibility("default"))) const FerriteDriverApi *ferrite_driver_entry(
    const FerriteHostApi *h) {
  /* A host of another major speaks another language; one older than this header lacks
     functions the header declares (identity calls only 1.0 ones, but says 1.1). */
  if (h == NULL || h->abi_major != FERRITE_ABI_MAJOR || h->abi_minor < FERRITE_ABI_MINOR)
    return NULL;
  host = h;
  api.name = str("identity");
  api.version = str("1.0.0");
  return &api;
}
