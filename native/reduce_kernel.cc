#include "reduce_kernel.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace multirank {
namespace {

// Elements per block: acc's block stays in L1/L2 while every source streams through it.
constexpr size_t kReduceBlock = 4096;

enum class ReduceOp { kSum, kProd, kMin, kMax };

template <typename T>
inline T Combine(T a, T b, ReduceOp op);

template <>
inline int32_t Combine<int32_t>(int32_t a, int32_t b, ReduceOp op) {
  switch (op) {
    // Through uint32_t: wraps modulo 2^32 like JS's ToInt32 and Math.imul, without signed-overflow UB.
    case ReduceOp::kSum: return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
    case ReduceOp::kProd: return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
    case ReduceOp::kMin: return b < a ? b : a;
    case ReduceOp::kMax: return b > a ? b : a;
  }
  return a;
}

template <typename T>
inline T Combine(T a, T b, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return a + b;
    case ReduceOp::kProd: return a * b;
    // `b != b` is NaN: NaN wins, as in reduce-ops.ts.
    case ReduceOp::kMin: return (b < a || b != b) ? b : a;
    case ReduceOp::kMax: return (b > a || b != b) ? b : a;
  }
  return a;
}

template <typename T, ReduceOp kOp>
void ReduceLoop(T* acc, const std::vector<const T*>& sources, size_t length) {
  for (size_t start = 0; start < length; start += kReduceBlock) {
    const size_t count = length - start < kReduceBlock ? length - start : kReduceBlock;
    T* a = acc + start;
    if (sources[0] != acc) std::memcpy(a, sources[0] + start, count * sizeof(T));
    for (size_t j = 1; j < sources.size(); ++j) {
      const T* s = sources[j] + start;
      for (size_t i = 0; i < count; ++i) a[i] = Combine<T>(a[i], s[i], kOp);
    }
  }
}

template <typename T>
void ReduceTyped(void* acc, const std::vector<const void*>& raw, size_t length, ReduceOp op) {
  std::vector<const T*> sources;
  sources.reserve(raw.size());
  for (const void* p : raw) sources.push_back(static_cast<const T*>(p));
  T* a = static_cast<T*>(acc);
  // The op is a template argument so each inner loop is branch-free and vectorizes.
  switch (op) {
    case ReduceOp::kSum: return ReduceLoop<T, ReduceOp::kSum>(a, sources, length);
    case ReduceOp::kProd: return ReduceLoop<T, ReduceOp::kProd>(a, sources, length);
    case ReduceOp::kMin: return ReduceLoop<T, ReduceOp::kMin>(a, sources, length);
    case ReduceOp::kMax: return ReduceLoop<T, ReduceOp::kMax>(a, sources, length);
  }
}

struct ArrayInfo {
  napi_typedarray_type type;
  size_t length;
  uint8_t* data;
};

bool GetArray(napi_env env, napi_value value, ArrayInfo* out) {
  bool is = false;
  if (napi_is_typedarray(env, value, &is) != napi_ok || !is) return false;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, value, &out->type, &out->length, &data, nullptr, nullptr) != napi_ok) return false;
  out->data = static_cast<uint8_t*>(data);
  return out->type == napi_float32_array || out->type == napi_float64_array || out->type == napi_int32_array;
}

}  // namespace

Napi::Value ReduceArrays(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto argError = [&](const std::string& message) {
    MakeArgumentError(env, "reduceArrays: " + message).ThrowAsJavaScriptException();
    return env.Undefined();
  };
  ArrayInfo acc{};
  if (info.Length() < 3 || !GetArray(env, info[0], &acc)) return argError("acc must be a Float32Array, Float64Array or Int32Array");
  if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() == 0) return argError("sources must be a non-empty array");
  if (!info[2].IsString()) return argError("op must be a string");
  const std::string opName = info[2].As<Napi::String>().Utf8Value();
  ReduceOp op;
  if (opName == "sum" || opName == "avg") op = ReduceOp::kSum;
  else if (opName == "prod") op = ReduceOp::kProd;
  else if (opName == "min") op = ReduceOp::kMin;
  else if (opName == "max") op = ReduceOp::kMax;
  else return argError("op must be one of sum, avg, prod, min, max (got " + opName + ")");

  const size_t element = acc.type == napi_float64_array ? 8 : 4;
  const uint8_t* accEnd = acc.data + acc.length * element;
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<const void*> sources;
  for (uint32_t j = 0; j < list.Length(); ++j) {
    Napi::Value value = list.Get(j);
    if (env.IsExceptionPending()) return env.Undefined();
    ArrayInfo source{};
    if (!GetArray(env, value, &source) || source.type != acc.type || source.length != acc.length) {
      return argError("sources[" + std::to_string(j) + "] must be an array of acc's type and length");
    }
    const uint8_t* sourceEnd = source.data + source.length * element;
    const bool overlap = acc.length > 0 && source.data < accEnd && acc.data < sourceEnd;
    if (overlap && !(j == 0 && source.data == acc.data)) {
      return argError("sources[" + std::to_string(j) + "] overlaps acc (only sources[0] may be acc itself)");
    }
    sources.push_back(source.data);
  }
  if (acc.length == 0) return env.Undefined();
  switch (acc.type) {
    case napi_float32_array: ReduceTyped<float>(acc.data, sources, acc.length, op); break;
    case napi_float64_array: ReduceTyped<double>(acc.data, sources, acc.length, op); break;
    default: ReduceTyped<int32_t>(acc.data, sources, acc.length, op); break;
  }
  return env.Undefined();
}

}  // namespace multirank
