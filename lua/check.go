package lua

// Check compiles body and returns the compile error text Redis would show
// after "Error compiling script (new function): ", or "" if it compiles.
// SCRIPT LOAD uses it to refuse a script without running it.
func Check(body []byte) string { return compileCached(body).compileErr }
