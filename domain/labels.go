package domain

import (
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Languages a person may read fieldsync in: Simplified Chinese first,
// English the other choice.
const (
	LangZH = "zh"
	LangEN = "en"
)

// labelsZH names, in Simplified Chinese, what a field user reads: kinds,
// statuses, categories, levels and fields. Keys are "kind:<name>",
// "<kind>.<field>" for a field, and "<kind>.<field>=<value>" for a value
// of an enum field. A key without a label reads as itself.
var labelsZH = map[string]string{
	"kind:household": "农户",
	"kind:visit":     "走访",
	"kind:dispute":   "矛盾纠纷",
	"kind:event":     "事项",
	"kind:need":      "群众诉求",
	"kind:project":   "为民办实事",

	"status": "状态", "void": "已作废", "conflict": "有冲突", "history": "状态记录",

	"household.grid_id": "网格", "household.head": "户主", "household.address": "住址", "household.phone": "电话",
	"household.members": "人口", "household.tags": "标签", "household.needs": "诉求（旧）", "household.member_id": "联户党员",

	"visit.household_id": "农户", "visit.visited_on": "走访日期", "visit.met": "见到", "visit.needs": "诉求（旧）",
	"visit.help": "帮扶", "visit.follow_up": "后续",

	"dispute.village_id": "村", "dispute.category": "类别", "dispute.title": "事由", "dispute.parties": "当事人",
	"dispute.agreement": "协议", "dispute.outcome": "结果说明", "dispute.status": "状态", "dispute.mediators": "调解员",
	"dispute.notes": "记录", "dispute.sessions": "调解过程", "dispute.result": "调解结果", "dispute.level": "化解层级",
	"dispute.occurred_on": "发生日期", "dispute.agreed_on": "达成协议日期", "dispute.household_id": "农户",
	"dispute.visit_id": "走访", "dispute.reported_by": "报告人",
	"dispute.status=open": "待调解", "dispute.status=mediating": "调解中", "dispute.status=agreed": "调解成功",
	"dispute.status=failed": "调解不成", "dispute.status=referred": "已移交", "dispute.status=withdrawn": "已撤回",
	"dispute.status=closed": "已结案",
	"dispute.result=agreed": "调解成功", "dispute.result=failed": "调解不成", "dispute.result=referred": "已移交",
	"dispute.result=withdrawn": "已撤回",
	"dispute.level=village":    "村级化解", "dispute.level=town": "镇级化解", "dispute.level=referred_out": "移交其他部门",
	"dispute.category=problem": "小问题", "dispute.category=quarrel": "小争吵", "dispute.category=dispute": "小纠纷",
	"dispute.category=hazard": "小隐患", "dispute.category=case": "小案件",

	"event.type": "类型", "event.village_id": "村", "event.occurred_on": "日期", "event.subject": "事由",
	"event.detail": "详情", "event.service_mode": "办理方式",
	"event.type=meeting": "会议", "event.type=party_day": "主题党日", "event.type=service_request": "代办服务",
	"event.type=status_change": "情况变化", "event.type=other": "其他",
	"event.service_mode=direct": "直接办理", "event.service_mode=proxy": "代办", "event.service_mode=appointment": "预约办理",

	"need.village_id": "村", "need.household_id": "农户", "need.visit_id": "走访", "need.category": "类别",
	"need.summary": "诉求", "need.detail": "详情", "need.status": "状态", "need.help": "帮扶措施",
	"need.resolution": "办理结果", "need.referral_reason": "上报原因", "need.taken_by": "承办人", "need.notes": "记录",
	"need.status=raised": "待办", "need.status=taken": "办理中", "need.status=referred": "已上报镇", "need.status=resolved": "已办结",
	"need.category=livelihood": "生活困难", "need.category=medical": "看病就医", "need.category=housing": "住房",
	"need.category=employment": "就业", "need.category=education": "上学", "need.category=elderly": "养老",
	"need.category=infrastructure": "基础设施", "need.category=other": "其他",

	"project.village_id": "村", "project.title": "项目", "project.detail": "详情", "project.leader_id": "领办人",
	"project.households": "受益农户", "project.planned_on": "计划完成日期", "project.status": "状态",
	"project.outcome": "成效", "project.progress": "进展",
	"project.status=planned": "计划中", "project.status=in_progress": "推进中", "project.status=completed": "已完成",
	"project.status=abandoned": "已终止",
}

// Label names key in lang (LangZH or LangEN). English reads the key's own
// words (the field or value name, "_" as a space); Chinese falls back to
// them where no label is set.
func Label(lang, key string) string {
	if lang != LangEN {
		if l, ok := labelsZH[key]; ok {
			return l
		}
	}
	return englishOf(key)
}

func englishOf(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '=' || key[i] == '.' || key[i] == ':' {
			key = key[i+1:]
			break
		}
	}
	b := []byte(key)
	for i := range b {
		if b[i] == '_' {
			b[i] = ' '
		}
	}
	return string(b)
}

// KindLabel names a kind in lang.
func KindLabel(lang string, k pb.Kind) string { return Label(lang, "kind:"+KindName(k)) }

// FieldLabel names a field of a kind in lang.
func FieldLabel(lang string, k pb.Kind, field string) string {
	return Label(lang, KindName(k)+"."+field)
}

// ValueLabel names a value of an enum field of a kind in lang (a status, a
// category, a level); any other value reads as itself.
func ValueLabel(lang string, k pb.Kind, field, value string) string {
	key := KindName(k) + "." + field + "=" + value
	if f := SpecOf(k).Field(field); f == nil || f.Format != Enum {
		return value
	}
	return Label(lang, key)
}
