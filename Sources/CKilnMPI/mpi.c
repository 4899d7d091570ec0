// The MPI calls of kiln_mpi.h: real with <mpi.h> (its include path comes from the CMPI module's
// pkg-config flags), stubs that report "no MPI" without it, so Kiln builds and its single-process
// paths run on machines without Open MPI.
#include "kiln_mpi.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#if __has_include(<mpi.h>)
#include <mpi.h>

int kn_mpi_available(void) { return 1; }

int kn_mpi_init(int *rank, int *size) {
    int provided = 0, status = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (status != MPI_SUCCESS) return status;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if ((status = MPI_Comm_rank(MPI_COMM_WORLD, rank)) != MPI_SUCCESS) return status;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

int kn_mpi_finalize(void) { return MPI_Finalize(); }

void kn_mpi_abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);  // MPI_Abort should not return
}

// Counts beyond INT_MAX go in chunks (MPI counts are int).
static int allreduce_sum(void *buffer, int64_t count, MPI_Datatype type, int64_t element_bytes) {
    char *bytes = buffer;
    for (int64_t done = 0; done < count;) {
        const int chunk = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        const int status = MPI_Allreduce(MPI_IN_PLACE, bytes + done * element_bytes, chunk, type, MPI_SUM, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return status;
        done += chunk;
    }
    return MPI_SUCCESS;
}

int kn_mpi_allreduce_sum_float(float *buffer, int64_t count) { return allreduce_sum(buffer, count, MPI_FLOAT, sizeof(float)); }
int kn_mpi_allreduce_sum_double(double *buffer, int64_t count) { return allreduce_sum(buffer, count, MPI_DOUBLE, sizeof(double)); }

int kn_mpi_iallreduce_sum_float(float *buffer, int64_t count, void **request) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    MPI_Request *handle = malloc(sizeof *handle);
    if (!handle) return MPI_ERR_NO_MEM;
    const int status = MPI_Iallreduce(MPI_IN_PLACE, buffer, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, handle);
    if (status != MPI_SUCCESS) { free(handle); return status; }
    *request = handle;
    return MPI_SUCCESS;
}

int kn_mpi_test(void *request, int *done) {
    return MPI_Test((MPI_Request *)request, done, MPI_STATUS_IGNORE);
}

int kn_mpi_wait(void *request) {
    const int status = MPI_Wait((MPI_Request *)request, MPI_STATUS_IGNORE);
    free(request);
    return status;
}

int kn_mpi_broadcast(void *buffer, int64_t bytes, int root) {
    char *data = buffer;
    for (int64_t done = 0; done < bytes;) {
        const int chunk = bytes - done > INT_MAX ? INT_MAX : (int)(bytes - done);
        const int status = MPI_Bcast(data + done, chunk, MPI_BYTE, root, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return status;
        done += chunk;
    }
    return MPI_SUCCESS;
}

int kn_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

void kn_mpi_error_string(int code, char *text, int capacity) {
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, message, &length) != MPI_SUCCESS) snprintf(message, sizeof message, "MPI error %d", code);
    snprintf(text, (size_t)capacity, "%s", message);
}

#else  // built without MPI

enum { NO_MPI = -1 };
int kn_mpi_available(void) { return 0; }
int kn_mpi_init(int *rank, int *size) { *rank = 0; *size = 1; return NO_MPI; }
int kn_mpi_finalize(void) { return NO_MPI; }
void kn_mpi_abort(int code) { exit(code); }
int kn_mpi_allreduce_sum_float(float *buffer, int64_t count) { (void)buffer; (void)count; return NO_MPI; }
int kn_mpi_allreduce_sum_double(double *buffer, int64_t count) { (void)buffer; (void)count; return NO_MPI; }
int kn_mpi_iallreduce_sum_float(float *buffer, int64_t count, void **request) { (void)buffer; (void)count; *request = NULL; return NO_MPI; }
int kn_mpi_test(void *request, int *done) { (void)request; *done = 1; return NO_MPI; }
int kn_mpi_wait(void *request) { (void)request; return NO_MPI; }
int kn_mpi_broadcast(void *buffer, int64_t bytes, int root) { (void)buffer; (void)bytes; (void)root; return NO_MPI; }
int kn_mpi_barrier(void) { return NO_MPI; }
void kn_mpi_error_string(int code, char *text, int capacity) {
    snprintf(text, (size_t)capacity, "this build of Kiln has no MPI (error %d): install libopenmpi-dev and rebuild from clean (rm -rf .build)", code);
}

#endif
