// converge's Open MPI binding (Node-API). The JavaScript side (src/comm/mpi.ts) calls MPI through
// these functions, one at a time (MPI_THREAD_SERIALIZED: never two calls at once, possibly from
// two threads):
//   - small operations run on the JavaScript thread, blocking — the same speed as MPI from C;
//   - large ones run on a progress thread this addon owns, and complete through a thread-safe
//     function, so timers and logging go on meanwhile (an AsyncWorker in libuv's pool made
//     process.exit() hang while an operation was pending, and cost 25–30 µs an operation);
//   - a watchdog thread ends the process when one MPI call outlasts --timeout: MPI cannot be
//     interrupted, and mpirun then takes the whole job down instead of letting it hang.
// Buffers are float32 typed arrays, used in place (zero copy).

#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <napi.h>

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

int worldRank = -1;
int worldSize = 0;
bool initialized = false;
bool finalized = false;

// ---- watchdog: one deadline at a time (calls are serialized)

// on the heap and never destroyed: at exit, glibc's pthread_cond_destroy would wait for the
// detached threads that still wait on them, and the process would never end
std::mutex& watchMutex = *new std::mutex;
std::condition_variable& watchWake = *new std::condition_variable;
bool armed = false;
Clock::time_point deadline;
int watchOp = 0;
long long watchSeq = 0;
double watchSeconds = 0;

// names of the binding's operation codes (src/comm/mpi.ts), for the watchdog's message
const char* const opNames[] = {"allreduce", "reduceScatter", "allgather", "broadcast", "gather", "barrier", "send", "recv", "the fingerprint check of collective", "allgatherShares", "MPI_Finalize"};

void arm(int op, long long seq, double seconds) {
  std::lock_guard<std::mutex> lock(watchMutex);
  armed = true;
  watchOp = op;
  watchSeq = seq;
  watchSeconds = seconds;
  deadline = Clock::now() + std::chrono::microseconds(static_cast<long long>(seconds * 1e6));
}

void disarm() {
  std::lock_guard<std::mutex> lock(watchMutex);
  armed = false;
}

void watchdog() {
  std::unique_lock<std::mutex> lock(watchMutex);
  for (;;) {
    watchWake.wait_for(lock, std::chrono::milliseconds(50));
    if (armed && Clock::now() > deadline) {
      std::fprintf(stderr,
                   "\nconverge: error: rank %d: %s #%lld timed out after %g s waiting for the other ranks; a rank is stalled or dead — "
                   "check its output, or raise --timeout (MPI cannot tell which rank is late).\n",
                   worldRank, opNames[watchOp], watchSeq, watchSeconds);
      std::fflush(stderr);
      // MPI calls cannot be interrupted: leave, and mpirun ends the job
      _exit(3);
    }
  }
}

std::string errorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

// ---- arguments

float* floats(const Napi::Value& value, size_t* length) {
  auto array = value.As<Napi::TypedArrayOf<float>>();
  *length = array.ElementLength();
  return array.Data();
}

int integer(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

// ---- the operations (each returns an MPI error code)

enum Op { AllreduceSum = 0, ReduceScatter = 1, Allgather = 2, Broadcast = 3, Gather = 4, Barrier = 5, Send = 6, Recv = 7, Check = 8, AllgatherShares = 9 };

struct Call {
  int op = 0;
  float* a = nullptr;  // buffer / send
  size_t aLength = 0;
  float* b = nullptr;  // recv
  int root = 0;        // root, dest or source
  int* counts = nullptr;
  int status = 0;      // recv: the source
  int code = MPI_SUCCESS;
};

int run(Call& call) {
  switch (call.op) {
    case AllreduceSum:
      return MPI_Allreduce(MPI_IN_PLACE, call.a, static_cast<int>(call.aLength), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    case ReduceScatter:
      // in place: rank r's share lands at the start of the buffer; src/comm/mpi.ts moves it to its place
      return MPI_Reduce_scatter(MPI_IN_PLACE, call.a, call.counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    case Allgather:
      return MPI_Allgather(call.a, static_cast<int>(call.aLength), MPI_FLOAT, call.b, static_cast<int>(call.aLength), MPI_FLOAT, MPI_COMM_WORLD);
    case Broadcast:
      return MPI_Bcast(call.a, static_cast<int>(call.aLength), MPI_FLOAT, call.root, MPI_COMM_WORLD);
    case Gather:
      return MPI_Gather(call.a, static_cast<int>(call.aLength), MPI_FLOAT, call.b, static_cast<int>(call.aLength), MPI_FLOAT, call.root, MPI_COMM_WORLD);
    case Barrier:
      return MPI_Barrier(MPI_COMM_WORLD);
    case Send:
      return MPI_Send(call.a, static_cast<int>(call.aLength), MPI_FLOAT, call.root, 7, MPI_COMM_WORLD);
    case Recv: {
      // probe first: a message of another size is an error we can name, not a truncation
      MPI_Status status;
      int code = MPI_Probe(call.root < 0 ? MPI_ANY_SOURCE : call.root, 7, MPI_COMM_WORLD, &status);
      if (code != MPI_SUCCESS) return code;
      int count = 0;
      MPI_Get_count(&status, MPI_FLOAT, &count);
      call.status = status.MPI_SOURCE;
      if (static_cast<size_t>(count) != call.aLength) {
        call.root = count;  // reported back as the size received
        return -1;
      }
      return MPI_Recv(call.a, count, MPI_FLOAT, status.MPI_SOURCE, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    case AllgatherShares:
      // counts = [share sizes…, share offsets…]; every rank's own share is already in place
      return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, call.a, call.counts, call.counts + worldSize, MPI_FLOAT, MPI_COMM_WORLD);
    case Check:
      // the fingerprint check: element-wise max of [op, −op, count, −count, root, −root, seq, −seq]
      return MPI_Allreduce(MPI_IN_PLACE, call.counts, 8, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  }
  return MPI_ERR_OTHER;
}

// ---- the progress thread

std::mutex& queueMutex = *new std::mutex;
std::condition_variable& queueWake = *new std::condition_variable;
std::deque<std::function<void()>>& queue = *new std::deque<std::function<void()>>;
Napi::ThreadSafeFunction completions;
int pending = 0;
int32_t* recvInfo = nullptr;  // [source, floats received] of the last recv, shared with JavaScript
Napi::Reference<Napi::Int32Array>* recvInfoRef = nullptr;

void progress() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(queueMutex);
      queueWake.wait(lock, [] { return !queue.empty(); });
      job = std::move(queue.front());
      queue.pop_front();
    }
    job();
  }
}

// ---- exports

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (initialized) return env.Undefined();
  // Open MPI mallocs a fresh buffer per large operation; without these, glibc returns it with
  // munmap each time and every 64 MiB all-reduce pays ~200 ms of page faults
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // and one arena: a thread's own arena cannot hold a 64 MiB block, and glibc then maps and
  // unmaps it per operation whatever M_MMAP_MAX says (measured: 64 MiB from the progress thread
  // took 45 ms instead of 23)
  mallopt(M_ARENA_MAX, 1);
  int provided = 0;
  int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  if (code != MPI_SUCCESS) {
    Napi::Error::New(env, "MPI_Init_thread failed: " + errorText(code)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
  MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
  initialized = true;
  completions = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "converge-mpi", 0, 1);
  auto shared = info[1].As<Napi::Int32Array>();
  recvInfoRef = new Napi::Reference<Napi::Int32Array>(Napi::Persistent(shared));
  recvInfo = shared.Data();
  completions.Unref(env);
  std::thread(watchdog).detach();
  if (provided >= MPI_THREAD_SERIALIZED) std::thread(progress).detach();
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", worldRank);
  out.Set("size", worldSize);
  out.Set("threads", provided >= MPI_THREAD_SERIALIZED);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  out.Set("library", std::string(version, length));
  return out;
}

/** Fills a Call from (op, a, b, root): a float buffer or the int32 fingerprint; b a float buffer or int32 counts. */
void callFrom(const Napi::CallbackInfo& info, size_t first, Call& call) {
  call.op = integer(info, first);
  const Napi::Value a = info[first + 1];
  if (a.IsTypedArray()) {
    if (a.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) call.counts = a.As<Napi::Int32Array>().Data();
    else call.a = floats(a, &call.aLength);
  }
  const Napi::Value b = info[first + 2];
  if (b.IsTypedArray()) {
    size_t ignored = 0;
    if (b.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) call.counts = b.As<Napi::Int32Array>().Data();
    else call.b = floats(b, &ignored);
  }
  call.root = integer(info, first + 3);
}

/** The call's result: the MPI error code (0: success; −1: recv of the wrong size); recv's source and size go to recvInfo. */
int finish(const Call& call) {
  if (call.op == Recv && recvInfo) {
    recvInfo[0] = call.status;
    recvInfo[1] = call.root;
  }
  return call.code;
}

/** call(op, a, b, root, seq, seconds) → code: runs on this thread. */
Napi::Value CallNow(const Napi::CallbackInfo& info) {
  Call call;
  callFrom(info, 0, call);
  arm(call.op, info[4].As<Napi::Number>().Int64Value(), info[5].As<Napi::Number>().DoubleValue());
  call.code = run(call);
  disarm();
  return Napi::Number::New(info.Env(), finish(call));
}

/** start(id, op, a, b, root, seq, seconds): runs on the progress thread; completion calls back (id, code, error text). */
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int id = integer(info, 0);
  Call call;
  callFrom(info, 1, call);
  const long long seq = info[5].As<Napi::Number>().Int64Value();
  const double seconds = info[6].As<Napi::Number>().DoubleValue();
  // the JavaScript side keeps the buffers alive until the completion arrives
  if (pending++ == 0) completions.Ref(env);
  {
    std::lock_guard<std::mutex> lock(queueMutex);
    queue.push_back([call, seq, seconds, id]() mutable {
      arm(call.op, seq, seconds);
      call.code = run(call);
      disarm();
      completions.BlockingCall([call, id](Napi::Env env, Napi::Function done) {
        if (--pending == 0) completions.Unref(env);
        done.Call({Napi::Number::New(env, id), Napi::Number::New(env, finish(call))});
      });
    });
  }
  queueWake.notify_one();
  return env.Undefined();
}

/** The text of an MPI error code. */
Napi::Value ErrorText(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), errorText(integer(info, 0)));
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  std::string reason = info[0].As<Napi::String>().Utf8Value();
  std::fprintf(stderr, "\nconverge: error: %s\n", reason.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return info.Env().Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  // mpirun reports a job whose ranks skip MPI_Finalize as failed
  if (initialized && !finalized) {
    finalized = true;
    arm(10, 0, 60);
    MPI_Finalize();
    disarm();
  }
  return info.Env().Undefined();
}

Napi::Object Exports(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("call", Napi::Function::New(env, CallNow, "call"));
  exports.Set("start", Napi::Function::New(env, Start, "start"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("errorText", Napi::Function::New(env, ErrorText, "errorText"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  return exports;
}

}  // namespace

NODE_API_MODULE(converge_mpi, Exports)
