package lua

import (
	"reflect"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// gopher-lua keeps the state we need for deterministic accounting and for
// Lua-5.1-compatible error messages (the current call frame, its pc, the
// register file, a table's array part and key order) in unexported fields.
// We read them through offsets computed once with reflect, by field name, so
// a layout change in a future gopher-lua version is detected at start-up
// (layoutOK=false) instead of silently reading garbage. With layoutOK=false
// the engine still works and stays deterministic; it only loses the
// instruction-level memory charges and the variable names in error messages.
//
// Only reads are done through these offsets, except fixNumberOperands which
// rewrites CONCAT temporaries exactly like PUC Lua's luaV_concat does,
// setHasErrorFunc which repairs a flag gopher-lua clears too early, and
// buildRecord/buildArray (tablebuild.go) which fill a new table's fields in
// one go with exactly what gopher-lua's own setters would leave there.

var (
	layoutOK bool

	offLCurrentFrame uintptr // LState.currentFrame (*callFrame)
	offLReg          uintptr // LState.reg (*registry)

	offCFIdx       uintptr // callFrame.Idx (int): depth in the call stack
	offCFFn        uintptr // callFrame.Fn (*LFunction)
	offCFParent    uintptr // callFrame.Parent (*callFrame)
	offCFPc        uintptr // callFrame.Pc (int)
	offCFBase      uintptr // callFrame.Base (int)
	offCFLocalBase uintptr // callFrame.LocalBase (int)
	offCFNArgs     uintptr // callFrame.NArgs (int)

	offRegArray uintptr // registry.array ([]LValue)
	offRegTop   uintptr // registry.top (int)

	// LState.hasErrorFunc (bool), written by setHasErrorFunc; optional.
	offLHasErrorFunc uintptr
	hasErrorFuncOK   bool

	offTArray uintptr // LTable.array ([]LValue)
	offTKeys  uintptr // LTable.keys ([]LValue)

	// LTable.strdict (map[string]LValue) and LTable.k2i (map[LValue]int),
	// written together with array and keys by buildRecord; optional.
	offTStrdict  uintptr
	offTK2i      uintptr
	tableBuildOK bool
)

func init() {
	layoutOK = computeLayout()
	tableBuildOK = layoutOK && computeTableBuild(reflect.TypeOf(glua.LTable{}))
}

func fieldOff(t reflect.Type, name string, kind reflect.Kind) (uintptr, reflect.Type, bool) {
	if t.Kind() != reflect.Struct {
		return 0, nil, false
	}
	f, ok := t.FieldByName(name)
	if !ok || f.Type.Kind() != kind {
		return 0, nil, false
	}
	return f.Offset, f.Type, true
}

func computeLayout() bool {
	var ok [13]bool
	var cfType, regType reflect.Type
	lt := reflect.TypeOf(glua.LState{})
	offLCurrentFrame, cfType, ok[0] = fieldOff(lt, "currentFrame", reflect.Pointer)
	offLReg, regType, ok[1] = fieldOff(lt, "reg", reflect.Pointer)
	offLHasErrorFunc, _, hasErrorFuncOK = fieldOff(lt, "hasErrorFunc", reflect.Bool)
	if !ok[0] || !ok[1] {
		return false
	}
	cf := cfType.Elem()
	regT := regType.Elem()
	offCFFn, _, ok[2] = fieldOff(cf, "Fn", reflect.Pointer)
	offCFParent, _, ok[3] = fieldOff(cf, "Parent", reflect.Pointer)
	offCFPc, _, ok[4] = fieldOff(cf, "Pc", reflect.Int)
	offCFBase, _, ok[5] = fieldOff(cf, "Base", reflect.Int)
	offCFLocalBase, _, ok[6] = fieldOff(cf, "LocalBase", reflect.Int)
	offCFNArgs, _, ok[7] = fieldOff(cf, "NArgs", reflect.Int)
	offRegArray, _, ok[8] = fieldOff(regT, "array", reflect.Slice)
	offRegTop, _, ok[9] = fieldOff(regT, "top", reflect.Int)
	tt := reflect.TypeOf(glua.LTable{})
	offTArray, _, ok[10] = fieldOff(tt, "array", reflect.Slice)
	offTKeys, _, ok[11] = fieldOff(tt, "keys", reflect.Slice)
	offCFIdx, _, ok[12] = fieldOff(cf, "Idx", reflect.Int)
	for _, b := range ok {
		if !b {
			return false
		}
	}
	// The Fn field must really be a *LFunction and the slices []LValue.
	if f, _ := cf.FieldByName("Fn"); f.Type != reflect.TypeOf((*glua.LFunction)(nil)) {
		return false
	}
	lvSlice := reflect.TypeOf([]glua.LValue(nil))
	if f, _ := regT.FieldByName("array"); f.Type != lvSlice {
		return false
	}
	if f, _ := tt.FieldByName("array"); f.Type != lvSlice {
		return false
	}
	if f, _ := tt.FieldByName("keys"); f.Type != lvSlice {
		return false
	}
	return true
}

// computeTableBuild checks the LTable fields buildRecord and buildArray
// write: their exact types, and that these are all of gopher-lua's table
// state besides Metatable and dict (so a table built with them is a
// complete one).
func computeTableBuild(tt reflect.Type) bool {
	var ok [2]bool
	var sdT, k2iT reflect.Type
	offTStrdict, sdT, ok[0] = fieldOff(tt, "strdict", reflect.Map)
	offTK2i, k2iT, ok[1] = fieldOff(tt, "k2i", reflect.Map)
	if !ok[0] || !ok[1] || tt.NumField() != 6 {
		return false
	}
	return sdT == reflect.TypeOf(map[string]glua.LValue(nil)) &&
		k2iT == reflect.TypeOf(map[glua.LValue]int(nil))
}

// setHasErrorFunc sets gopher-lua's "a protected call with a handler is
// active" flag (see afterPcall).
func setHasErrorFunc(L *glua.LState, v bool) {
	if hasErrorFuncOK {
		*(*bool)(unsafe.Add(unsafe.Pointer(L), offLHasErrorFunc)) = v
	}
}

// frame is an opaque pointer to a gopher-lua callFrame.
type frame unsafe.Pointer

func curFrame(L *glua.LState) frame {
	return *(*frame)(unsafe.Add(unsafe.Pointer(L), offLCurrentFrame))
}

func frameIdx(f frame) int { return *(*int)(unsafe.Add(unsafe.Pointer(f), offCFIdx)) }

func frameFn(f frame) *glua.LFunction {
	return *(**glua.LFunction)(unsafe.Add(unsafe.Pointer(f), offCFFn))
}

func frameParent(f frame) frame {
	return *(*frame)(unsafe.Add(unsafe.Pointer(f), offCFParent))
}

func framePc(f frame) int { return *(*int)(unsafe.Add(unsafe.Pointer(f), offCFPc)) }

func frameBase(f frame) int { return *(*int)(unsafe.Add(unsafe.Pointer(f), offCFBase)) }

func frameLocalBase(f frame) int { return *(*int)(unsafe.Add(unsafe.Pointer(f), offCFLocalBase)) }

func frameNArgs(f frame) int { return *(*int)(unsafe.Add(unsafe.Pointer(f), offCFNArgs)) }

func regArray(L *glua.LState) []glua.LValue {
	reg := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), offLReg))
	return *(*[]glua.LValue)(unsafe.Add(reg, offRegArray))
}

func regTop(L *glua.LState) int {
	reg := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), offLReg))
	return *(*int)(unsafe.Add(reg, offRegTop))
}

// regValue returns register r of a Lua frame (R(r) in opcode notation).
func regValue(L *glua.LState, f frame, r int) glua.LValue {
	arr := regArray(L)
	i := frameLocalBase(f) + r
	if i < 0 || i >= len(arr) || arr[i] == nil {
		return glua.LNil
	}
	return arr[i]
}

func setRegValue(L *glua.LState, f frame, r int, v glua.LValue) {
	arr := regArray(L)
	if i := frameLocalBase(f) + r; i >= 0 && i < len(arr) {
		arr[i] = v
	}
}

func tableArrayLen(t *glua.LTable) int {
	return len(*(*[]glua.LValue)(unsafe.Add(unsafe.Pointer(t), offTArray)))
}

// tableKeys is gopher-lua's record of hash-part keys in first-insertion
// order, including keys whose value has since been set to nil.
func tableKeys(t *glua.LTable) []glua.LValue {
	return *(*[]glua.LValue)(unsafe.Add(unsafe.Pointer(t), offTKeys))
}
