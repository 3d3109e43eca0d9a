/* lua_inc.h — includes the Lua 5.4 headers.
 *
 * vm/limits.h shadows the system <limits.h> on the include path (-I vm), so
 * luaconf.h would not see LLONG_MAX/UINT_MAX and would refuse to build or
 * pick 16-bit int settings. Define what it needs from the compiler's own
 * predefined macros first. */
#ifndef CR_LUA_INC_H
#define CR_LUA_INC_H
#ifndef LLONG_MAX
#define LLONG_MAX __LONG_LONG_MAX__
#define LLONG_MIN (-LLONG_MAX - 1LL)
#endif
#ifndef INT_MAX
#define INT_MAX __INT_MAX__
#define INT_MIN (-INT_MAX - 1)
#endif
#ifndef UINT_MAX
#define UINT_MAX (__INT_MAX__ * 2U + 1U)
#endif
#ifndef LONG_MAX
#define LONG_MAX __LONG_MAX__
#define LONG_MIN (-LONG_MAX - 1L)
#endif
#ifndef SHRT_MAX
#define SHRT_MAX __SHRT_MAX__
#endif
#ifndef CHAR_BIT
#define CHAR_BIT __CHAR_BIT__
#endif
#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>
#endif
