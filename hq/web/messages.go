package web

// messages are the page's own words, Simplified Chinese first; the
// report's titles and labels come from package report in the same
// language.
var messages = map[string]map[string]string{
	"zh": {
		"app":             "fieldsync · 组织部看板",
		"signin":          "登录",
		"signin_intro":    "请输入您的人员编号和管理员发给您的一次性登录码。",
		"person":          "人员编号",
		"code":            "一次性登录码",
		"signout":         "退出登录",
		"scope_city":      "全市",
		"scope_town":      "本镇",
		"month":           "月份",
		"show":            "查看",
		"download_csv":    "下载 CSV",
		"download_xlsx":   "下载 Excel",
		"norows":          "没有数据",
		"lang_zh":         "中文",
		"lang_en":         "English",
		"err_signin":      "人员编号或登录码不对，或登录码已用过、已过期。请向管理员要一个新的登录码。",
		"err_notallowed":  "此人员不能登录组织部看板：只有组织部（hq）人员和镇党委书记可以登录，且账号未停用。",
		"err_locked":      "登录失败次数过多，请在 %s（北京时间）之后再试。",
		"err_csrf":        "表单已过期，请重新打开页面再提交。",
		"err_403":         "无权查看：所请求的内容不在您所在镇的范围内。",
		"err_404":         "没有这个页面。",
		"err_notuploaded": "该文件尚未上传到服务器：设备联网同步后即可查看。",
		"err_nofiles":     "此处不提供附件内容：请在 syncd 自带的 HQ 页面查看。",
		"err_400":         "请求参数有误：",
		"err_500":         "服务器出错，请稍后再试。",
		"err_title":       "无法显示",
		"back":            "返回首页",
		"signedout":       "您已退出登录。",
		"please":          "请先登录。",
	},
	"en": {
		"app":             "fieldsync · HQ",
		"signin":          "Sign in",
		"signin_intro":    "Enter your person ID and the one-time code your administrator gave you.",
		"person":          "Person ID",
		"code":            "One-time code",
		"signout":         "Sign out",
		"scope_city":      "Whole city",
		"scope_town":      "town",
		"month":           "Month",
		"show":            "Show",
		"download_csv":    "Download CSV",
		"download_xlsx":   "Download Excel",
		"norows":          "No rows",
		"lang_zh":         "中文",
		"lang_en":         "English",
		"err_signin":      "Wrong person ID or code, or the code was already used or has expired. Ask your administrator for a new code.",
		"err_notallowed":  "This person may not sign in to the HQ page: only HQ people and town secretaries whose accounts are not disabled may.",
		"err_locked":      "Too many failed sign-ins; try again after %s (China time).",
		"err_csrf":        "The form has expired; open the page again and resubmit.",
		"err_403":         "Not allowed: what you asked for is outside your town.",
		"err_404":         "No such page.",
		"err_notuploaded": "The file is not on the server yet: it shows once the device that attached it has synced.",
		"err_nofiles":     "Files are not served here: open them on syncd's own HQ page.",
		"err_400":         "Bad request: ",
		"err_500":         "Server error; try again later.",
		"err_title":       "Cannot show this",
		"back":            "Back to the start",
		"signedout":       "You have signed out.",
		"please":          "Please sign in first.",
	},
}

func msg(lang, key string) string {
	if m, ok := messages[lang][key]; ok {
		return m
	}
	return messages["zh"][key]
}
